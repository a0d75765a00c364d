"""``ml_client.online_deployments``: each deployment is ``instance_count`` serving processes behind its endpoint's router.

Everything a deployment needs is settled here, in the caller's process, so a bad spec fails before a process
starts: the endpoint, the model (registered as Azure registers a local ``Model(path=...)``: anonymously), the
scoring script, the environment and the request and probe settings. A detached provisioner then builds the
environment if it needs one and starts the hosts (``localml.serving.supervisor``); ``.result()`` waits for it.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

from azure.ai.ml.entities import (
    CodeConfiguration,
    Environment,
    KubernetesOnlineDeployment,
    ManagedOnlineDeployment,
    Model,
    OnlineDeployment,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.core.exceptions import HttpResponseError

from amlkit import names
from amlkit.references import parse_asset_reference
from amlkit.traffic import check_deletable
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, not_found
from localml.execution.command import upload_code
from localml.operations.environments import EnvironmentOperations, is_curated
from localml.operations.models import ModelOperations
from localml.operations.online_endpoints import OnlineEndpointOperations, bearer, refuse_local
from localml.pollers import WaitingPoller
from localml.serving.records import IN_PROGRESS, deployment_row, deployment_rows
from localml.serving.supervisor import Supervisor, tail
from localml.workspace import LocalWorkspace

#: Azure's defaults for what a deployment leaves unset (``OnlineRequestSettings``, ``ProbeSettings``).
REQUEST_DEFAULTS = {"max_concurrent_requests_per_instance": 1, "request_timeout_ms": 5000, "max_queue_wait_ms": 500}
PROBE_DEFAULTS = {"initial_delay": 10, "period": 10, "timeout": 2, "success_threshold": 1, "failure_threshold": 30}
#: Azure's bounds on a request's timeout on a managed online endpoint.
MAX_REQUEST_TIMEOUT_MS = 180_000


class OnlineDeploymentOperations:
    def __init__(self, workspace: LocalWorkspace, supervisor: Supervisor, endpoints: OnlineEndpointOperations,
                 models: ModelOperations, environments: EnvironmentOperations):
        self._workspace = workspace
        self._catalog = workspace.catalog
        self._supervisor = supervisor
        self._endpoints = endpoints
        self._models = models
        self._environments = environments

    def begin_create_or_update(self, deployment: OnlineDeployment, *, local: bool = False, **kwargs) -> WaitingPoller:
        """Create or replace the deployment and start its hosts in a detached process.

        ``.result()`` waits until every host is ready and returns the deployment (provisioning_state Succeeded); if one
        is not, it raises Azure's ``HttpResponseError`` with the reason, which ``get`` and ``get_logs`` show too. An
        update stops the deployment's hosts and starts the new ones (localml does not roll instances one by one).
        """
        refuse_local(local)
        if isinstance(deployment, KubernetesOnlineDeployment) or not isinstance(deployment, ManagedOnlineDeployment):
            raise UnsupportedFeatureError(f"{type(deployment).__name__}", "localml serves managed online deployments: use ManagedOnlineDeployment.")
        name = names.DEPLOYMENT.check(deployment.name)
        endpoint = self._endpoints.get(deployment.endpoint_name or "").name
        row = {
            "name": name, "endpoint_name": endpoint, **self._settings(deployment), **self._served(deployment),
            "description": deployment.description, "tags": dict(deployment.tags or {}), "instance_type": deployment.instance_type,
            "error": None, "provisioner": None,
        }
        existing = deployment_row(self._catalog, endpoint, name)
        row.update(provisioning_state="Updating" if existing else "Creating", instances=[None] * row["instance_count"])
        self._supervisor.start_deployment(row)
        return WaitingPoller(lambda: self._state(endpoint, name) not in IN_PROGRESS and self._supervisor.router_has_read(endpoint),
                             lambda: self._settled(endpoint, name))

    def get(self, name: str, endpoint_name: str, *, local: bool = False) -> ManagedOnlineDeployment:
        refuse_local(local)
        self._endpoints.get(endpoint_name)  # brings back what died
        return self._to_entity(self._row(endpoint_name, name))

    def list(self, endpoint_name: str, *, local: bool = False) -> Iterator[ManagedOnlineDeployment]:
        refuse_local(local)
        self._endpoints.get(endpoint_name)
        return iter([self._to_entity(row) for row in deployment_rows(self._catalog, endpoint_name)])

    def get_logs(self, name: str, endpoint_name: str, lines: int, *, container_type: str | None = None, local: bool = False) -> str:
        """The last ``lines`` lines of the deployment's log: its hosts' output (a scoring script's traceback too) and what
        localml did. ``container_type="StorageInitializer"`` gives the environment's build log instead."""
        refuse_local(local)
        self._row(endpoint_name, name)
        files = self._supervisor.files(endpoint_name)
        if container_type and container_type.lower() == "storageinitializer":
            return tail(files.deployment_dir(name) / "environment_build.txt", lines)
        return tail(files.log(name), lines)

    def get_live_figures(self, name: str, endpoint_name: str, window_seconds: int = 60) -> dict:
        """localml only: the deployment's requests, failures by status class and latency percentiles over the last
        ``window_seconds``, as its endpoint's router counts them (``GET /.localml/figures``), for a rollout to judge it by.

        >>> ml_client.online_deployments.get_live_figures("green", "diabetes-ep", window_seconds=60)
        {'window_seconds': 60, 'requests': 120, 'mirrored': 0, 'status': {'2xx': 118, '4xx': 1, '5xx': 1},
         'failures': 1, 'failure_rate': 0.0083, 'latency_ms': {'p50': 0.9, 'p90': 1.4, 'p95': 1.9, 'p99': 3.0}}
        """
        self._row(endpoint_name, name)
        endpoint = self._endpoints.get(endpoint_name)
        query = urllib.parse.urlencode({"window_seconds": window_seconds})
        url = endpoint.scoring_uri.removesuffix("/score") + f"/.localml/figures?{query}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer(self._endpoints.get_keys(endpoint_name))}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            figures = json.loads(response.read())
        empty = {"requests": 0, "mirrored": 0, "status": {}, "failures": 0, "failure_rate": 0.0, "latency_ms": {}}
        return {"window_seconds": figures["window_seconds"], **figures["deployments"].get(name.lower(), empty)}

    def begin_delete(self, name: str, endpoint_name: str, *, local: bool = False) -> WaitingPoller:
        """Stop the deployment's hosts and forget it; refused while it takes live or mirror traffic, as on Azure."""
        refuse_local(local)
        endpoint = self._endpoints.get(endpoint_name)
        self._row(endpoint_name, name)
        check_deletable(endpoint_name, name, endpoint.traffic, endpoint.mirror_traffic)
        self._supervisor.remove(endpoint_name, name)
        return WaitingPoller(lambda: self._supervisor.router_has_read(endpoint_name), lambda: None)

    # -- what a deployment serves, and how -----------------------------------------------------
    def _served(self, deployment: ManagedOnlineDeployment) -> dict:
        """The model, scoring code and environment of the row. Every check comes first; only then are a local model
        and code folder copied in (the model registered as Azure registers a ``Model(path=...)``) and an inline
        environment registered, so a refused deployment leaves nothing behind."""
        where = f"Deployment '{deployment.name}'"
        model, code = self._model(deployment), deployment.code_configuration
        if code is None and (model is None or model.type != "mlflow_model"):
            what = f"its model is a {model.type}" if model else "it has no model"
            raise LocalMLValidationError(
                f"{where}: {what}, so it needs a scoring script: give code_configuration=CodeConfiguration(code='./src', "
                "scoring_script='score.py') and an environment, or deploy an MLflow model (type mlflow_model), which needs none."
            )
        if code is not None:
            _check_scoring_script(where, code, self._code_folder(code.code))
            if deployment.environment is None:
                raise LocalMLValidationError(
                    f"{where} runs a scoring script, so it needs an environment: name a curated one ('AzureML-sklearn-1.5@latest' "
                    "runs on localml's own interpreter) or give an Environment with a conda_file."
                )
        if isinstance(deployment.model, Model) and deployment.model.path:
            model = self._models.create_or_update(model)  # a folder or a job's output: registered now, as Azure's SDK does
        served = {
            "model": f"azureml:{model.name}:{model.version}" if model else None,
            "model_path": model.path if model else None,
            "model_kind": "custom" if code else "mlflow",
            "code": None, "code_path": None, "scoring_script": None,
        }
        if code is not None:
            reference = upload_code(self._workspace, code.code)
            path = self._catalog.get_asset("code", reference.split(":")[1], "1")["path"]
            served.update(code=reference, code_path=path, scoring_script=str(code.scoring_script))
        environment = self._environment(deployment.environment)
        runtime, warnings = self._environments.runtime_for(environment)
        return {**served, "environment": environment, "runtime": runtime, "warnings": warnings}

    def _model(self, deployment: ManagedOnlineDeployment) -> Model | None:
        """The deployment's model: a registered version, or its ``Model(path=...)`` as given (registered later)."""
        model = deployment.model
        if model is None:
            return None
        if isinstance(model, str):
            reference = parse_asset_reference(model, require_prefix=False)
            if reference is None:
                raise LocalMLValidationError(f"Deployment '{deployment.name}': model '{model}' is not a model reference; "
                                             "use azureml:<name>:<version>, azureml:<name>@latest or a Model entity.")
            return self._models.get(reference.name, reference.version, reference.label)
        if model.path:
            model.type = model.type or "custom_model"  # Azure's default type, which the registration takes too
            return model
        return self._models.get(model.name, model.version, None if model.version else "latest")

    def _code_folder(self, code: str | None) -> Path:
        """The local folder of ``code_configuration.code``: a folder, or a code snapshot this workspace holds."""
        if code and str(code).startswith("azureml:"):
            reference = upload_code(self._workspace, code)  # checks the snapshot exists, copies nothing
            return self._workspace.resolve_uri(self._catalog.get_asset("code", reference.split(":")[1], "1")["path"])
        return self._workspace.resolve_uri(str(code or ""))

    def _environment(self, environment: str | Environment | None) -> str | None:
        """A reference the environments resolve: curated names as they are, an inline Environment registered (as Azure does)."""
        if environment is None or isinstance(environment, str):
            return environment.removeprefix("azureml:") if environment else None
        if environment.name and is_curated(environment.name):
            return environment.name
        registered = self._environments.create_or_update(environment)
        return f"{registered.name}:{registered.version}"

    def _settings(self, deployment: ManagedOnlineDeployment) -> dict:
        where = f"Deployment '{deployment.name}'"
        count = 1 if deployment.instance_count is None else deployment.instance_count
        if count < 1:
            raise LocalMLValidationError(f"{where}: instance_count is {count}; a managed deployment runs at least 1 instance.")
        request = _filled(deployment.request_settings, REQUEST_DEFAULTS)
        if request["max_concurrent_requests_per_instance"] < 1:
            raise LocalMLValidationError(f"{where}: request_settings.max_concurrent_requests_per_instance must be at least 1.")
        if not 0 < request["request_timeout_ms"] <= MAX_REQUEST_TIMEOUT_MS:
            raise LocalMLValidationError(f"{where}: request_settings.request_timeout_ms is {request['request_timeout_ms']}; "
                                         f"Azure allows 1 to {MAX_REQUEST_TIMEOUT_MS} ms.")
        probes = {key: _filled(getattr(deployment, key), PROBE_DEFAULTS) for key in ("liveness_probe", "readiness_probe")}
        for key, probe in probes.items():
            if probe["timeout"] <= 0 or probe["period"] <= 0 or probe["failure_threshold"] < 1 or probe["initial_delay"] < 0:
                raise LocalMLValidationError(f"{where}: {key} {probe} is not valid: timeout and period must be positive, "
                                             "failure_threshold at least 1 and initial_delay not negative.")
        return {
            "instance_count": count, "request_settings": request, **probes,
            "environment_variables": {str(k): str(v) for k, v in (deployment.environment_variables or {}).items()},
        }

    # -- reading back --------------------------------------------------------------------------
    def _row(self, endpoint: str, name: str) -> dict:
        row = deployment_row(self._catalog, endpoint, name)
        if row is None:
            self._endpoints.get(endpoint)  # an unknown endpoint is the error to report first
            known = [r["name"] for r in deployment_rows(self._catalog, endpoint)]
            raise not_found(f"Deployment of endpoint '{endpoint}'", name, known=known)
        return row

    def _state(self, endpoint: str, name: str) -> str:
        self._endpoints.get(endpoint)  # a provisioner that died half way is started again
        return self._row(endpoint, name)["provisioning_state"]

    def _settled(self, endpoint: str, name: str) -> ManagedOnlineDeployment:
        row = self._row(endpoint, name)
        if row["provisioning_state"] == "Failed":
            raise HttpResponseError(message=f"(ResourceNotReady) {row['error']}")
        return self._to_entity(row)

    def _to_entity(self, row: dict) -> ManagedOnlineDeployment:
        return ManagedOnlineDeployment(
            name=row["name"],
            endpoint_name=row["endpoint_name"],
            model=row["model"],
            code_configuration=CodeConfiguration(code=row["code"], scoring_script=row["scoring_script"]) if row["code"] else None,
            environment=row["environment"],
            instance_type=row["instance_type"],
            instance_count=row["instance_count"],
            request_settings=OnlineRequestSettings(**row["request_settings"]),
            liveness_probe=ProbeSettings(**row["liveness_probe"]),
            readiness_probe=ProbeSettings(**row["readiness_probe"]),
            environment_variables=row["environment_variables"],
            description=row["description"],
            tags=row["tags"],
            properties={"localml.error": row["error"]} if row["error"] else {},
            provisioning_state=row["provisioning_state"],
        )


def _check_scoring_script(where: str, code: CodeConfiguration, folder: Path) -> None:
    script = str(code.scoring_script or "")
    if not script or not (folder / script).is_file():
        found = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
        raise LocalMLValidationError(
            f"{where}: scoring script {script!r} is not in its code folder {code.code} (Python files there: "
            f"{', '.join(found) or 'none'}). Set code_configuration.scoring_script to the file that defines init() and run()."
        )


def _filled(settings: OnlineRequestSettings | ProbeSettings | None, defaults: dict) -> dict:
    """The settings' fields, Azure's default where one is unset."""
    return {key: getattr(settings, key, None) if getattr(settings, key, None) is not None else default for key, default in defaults.items()}
