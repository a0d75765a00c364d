"""The catalog rows of online endpoints and deployments, and the files each endpoint keeps on disk.

The catalog is the truth: an endpoint's row holds its settings, its credentials and the router's port (chosen once,
so ``scoring_uri`` never changes) and process; a deployment's row holds what it serves, how, its provisioning state
and its hosts' processes. The files under ``<root>/endpoints/<endpoint>/`` are what the processes read and write
(see the contract in ``localml.serving``); they can always be written again from the rows.
"""

from __future__ import annotations

from pathlib import Path

from localml.store import Catalog
from localml.workspace import contained

ENDPOINT_KIND = "online_endpoint"
DEPLOYMENT_KIND = "online_deployment"
#: Provisioning states in which a deployment's processes are being started by a provisioner.
IN_PROGRESS = frozenset({"Creating", "Updating"})


class EndpointFiles:
    """Where one endpoint's router, hosts and logs keep their files."""

    def __init__(self, root: Path, endpoint: str):
        self.folder = contained(Path(root) / "endpoints", endpoint, "Endpoint name")
        self.endpoint_json = self.folder / "endpoint.json"
        self.router_json = self.folder / "router.json"
        self.router_log = self.folder / "router.log"
        self.lock = self.folder / ".lock"

    def deployment_dir(self, deployment: str) -> Path:
        return contained(self.folder / "deployments", deployment, "Deployment name")

    def log(self, deployment: str) -> Path:
        """The deployment's log: its hosts' stdout and stderr, and what localml did to them."""
        return self.deployment_dir(deployment) / "serving.log"

    def host_spec(self, deployment: str, instance: int) -> Path:
        return self.deployment_dir(deployment) / f"instance-{instance}.spec.json"

    def host_state(self, deployment: str, instance: int) -> Path:
        return self.deployment_dir(deployment) / f"instance-{instance}.state.json"


def deployment_key(endpoint: str, deployment: str) -> str:
    """A deployment's row name: deployment names are unique per endpoint, and compared in lower case as traffic is."""
    return f"{endpoint}/{deployment.lower()}"


def endpoint_row(catalog: Catalog, endpoint: str) -> dict | None:
    return catalog.get_resource(ENDPOINT_KIND, endpoint)


def deployment_row(catalog: Catalog, endpoint: str, deployment: str) -> dict | None:
    return catalog.get_resource(DEPLOYMENT_KIND, deployment_key(endpoint, deployment))


def deployment_rows(catalog: Catalog, endpoint: str) -> list[dict]:
    return [row for row in catalog.list_resources(DEPLOYMENT_KIND) if row["endpoint_name"] == endpoint]


def save_endpoint(catalog: Catalog, row: dict) -> None:
    catalog.put_resource(ENDPOINT_KIND, row["name"], row)


def save_deployment(catalog: Catalog, row: dict) -> None:
    catalog.put_resource(DEPLOYMENT_KIND, deployment_key(row["endpoint_name"], row["name"]), row)
