"""Batch endpoints on localml: a deployment's settings kept in the catalog, and the job an ``invoke`` starts.

The job is localml's driver (``python -m localml.batch.driver``, ``driver.py``), which splits the input folder's
files into mini-batches and hands them to worker processes it forks (``pool.py``, ``worker.py``) after loading the
model once. The driver and workers run in the deployment's environment (a venv built from its conda spec, or
localml's own interpreter for a curated one), so they import only the standard library and what the model needs:
never the Azure SDK, which such a venv need not hold (``submit.py`` runs in the caller and may).

Rows of the catalog (``Catalog.put_resource``): ``batch_endpoint`` by endpoint name; ``batch_deployment`` by
``<endpoint>/<deployment>``, deployment names compared in lower case as Azure compares them.
"""

from __future__ import annotations

ENDPOINT_KIND = "batch_endpoint"
DEPLOYMENT_KIND = "batch_deployment"


def deployment_key(endpoint: str, deployment: str) -> str:
    return f"{endpoint}/{deployment.lower()}"


def endpoint_row(catalog, endpoint: str) -> dict | None:
    return catalog.get_resource(ENDPOINT_KIND, endpoint)


def deployment_row(catalog, endpoint: str, deployment: str) -> dict | None:
    return catalog.get_resource(DEPLOYMENT_KIND, deployment_key(endpoint, deployment))


def deployment_rows(catalog, endpoint: str) -> list[dict]:
    return [row for row in catalog.list_resources(DEPLOYMENT_KIND) if row["endpoint_name"] == endpoint]


def save_endpoint(catalog, row: dict) -> None:
    catalog.put_resource(ENDPOINT_KIND, row["name"], row)


def save_deployment(catalog, row: dict) -> None:
    catalog.put_resource(DEPLOYMENT_KIND, deployment_key(row["endpoint_name"], row["name"]), row)
