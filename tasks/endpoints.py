"""Online endpoints: make sure one exists, deploy a model to it, move traffic, score, read a deployment's figures.

Each task is one operation of ``ml_client.online_endpoints`` / ``online_deployments``, the same on Azure and on
localml. Creating a deployment is idempotent: the deployment carries a fingerprint of what it serves (the spec,
and the content of its local files), so a retry or a re-run finds it ready and deploys nothing again.

The tasks that change or read an endpoint's state are never cached (``NO_CACHE``), whatever Prefect's result
settings: a rollback's ``set_traffic({"blue": 100})`` must happen even when the same run asked for it before.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from amlkit.hashing import content_hash
from amlkit.references import is_local_path
from tasks.azure_metrics import endpoint_resource_id, read_figures
from tasks.registration import fingerprint
from tasks.retries import TRANSIENT_RETRIES, is_transient
from tasks.workspace import azure_metrics_client, get_client, is_local_client

#: The deployment tag holding the fingerprint of what it serves.
DEPLOYMENT_FINGERPRINT_TAG = "amlflows.deployment"


class EndpointSpec(BaseModel):
    name: str = Field(description="Endpoint name: 3-32 characters, a letter first, then letters, digits and '-'")
    auth_mode: Literal["key", "aml_token"] = Field(default="key", description="How callers authenticate")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    def to_endpoint(self) -> Any:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        return ManagedOnlineEndpoint(name=self.name, auth_mode=self.auth_mode, description=self.description, tags=self.tags)


class EndpointRef(BaseModel):
    name: str
    scoring_uri: str | None = None
    openapi_uri: str | None = None
    traffic: dict[str, int] = Field(default_factory=dict)
    mirror_traffic: dict[str, int] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(cls, endpoint: Any) -> "EndpointRef":
        return cls(name=endpoint.name, scoring_uri=endpoint.scoring_uri, openapi_uri=endpoint.openapi_uri,
                   traffic=dict(endpoint.traffic or {}), mirror_traffic=dict(endpoint.mirror_traffic or {}),
                   tags=dict(endpoint.tags or {}))


class DeploymentSpec(BaseModel):
    name: str = Field(description="Deployment name (blue, green, ...)")
    endpoint_name: str
    model: str = Field(description="A registered model (azureml:NAME:VERSION or azureml:NAME@champion) or a local model folder")
    model_type: Literal["mlflow_model", "custom_model"] = "mlflow_model"
    code_path: str | None = Field(default=None, description="Folder of the scoring script (custom models)")
    scoring_script: str | None = Field(default=None, description="score.py with init() and run(raw_data) (custom models)")
    environment: str | None = Field(
        default=None, description="An environment (AzureML-sklearn-1.5@latest, azureml:NAME:VERSION) or a conda .yml file; none for MLflow models"
    )
    instance_type: str = Field(default="Standard_DS3_v2", description="VM size (Azure); ignored by localml")
    instance_count: int = Field(default=1, ge=1, description="Serving instances (on localml, serving processes)")
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=5000, ge=1, le=180000)
    environment_variables: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    def digest(self) -> str:
        """What the deployment serves: the spec, and the content of its local files (a changed model redeploys)."""
        payload = {"spec": self.model_dump(exclude={"tags"})}
        for field in ("model", "code_path", "environment"):
            value = getattr(self, field)
            if value and is_local_path(value) and Path(value).exists():
                payload[f"{field}_content"] = content_hash(value)
        return fingerprint(payload)

    def to_deployment(self) -> Any:
        from azure.ai.ml.entities import CodeConfiguration, Environment, ManagedOnlineDeployment, Model, OnlineRequestSettings

        model = Model(path=self.model, type=self.model_type) if is_local_path(self.model) else self.model
        code = CodeConfiguration(code=self.code_path, scoring_script=self.scoring_script) if self.scoring_script else None
        environment = self.environment
        if environment and environment.endswith((".yml", ".yaml")):  # a conda spec; anything else names an environment
            environment = Environment(conda_file=environment, image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest")
        return ManagedOnlineDeployment(
            name=self.name, endpoint_name=self.endpoint_name, model=model, code_configuration=code, environment=environment,
            instance_type=self.instance_type, instance_count=self.instance_count,
            request_settings=OnlineRequestSettings(
                max_concurrent_requests_per_instance=self.max_concurrent_requests_per_instance,
                request_timeout_ms=self.request_timeout_ms,
            ),
            environment_variables=self.environment_variables or None,
            tags={**self.tags, DEPLOYMENT_FINGERPRINT_TAG: self.digest()},
        )


class DeploymentRef(BaseModel):
    name: str
    endpoint_name: str
    model: str | None = None
    instance_count: int | None = None
    provisioning_state: str | None = None
    created: bool = False


class DeploymentFigures(BaseModel):
    """A deployment's live figures over a sliding window, as the endpoint's router counts them (localml) or as
    Azure Monitor's per-minute metrics of the endpoint add up (Azure)."""

    deployment: str
    window_seconds: float
    requests: int = 0
    mirrored: int = 0
    failures: int = 0
    failure_rate: float = 0.0
    status: dict[str, int] = Field(default_factory=dict)
    latency_ms: dict[str, float | None] = Field(default_factory=dict)


@task(name="ensure_endpoint", **TRANSIENT_RETRIES)
def ensure_endpoint(workspace: str, spec: EndpointSpec) -> EndpointRef:
    """The endpoint, created unless one of that name exists (an existing one keeps its traffic and keys).

    Example:
        ```python
        endpoint = ensure_endpoint("local", EndpointSpec(name="diabetes-ep"))
        print(endpoint.scoring_uri)
        ```
    """
    client = get_client(workspace)
    try:
        return EndpointRef.of(client.online_endpoints.get(spec.name))
    except ResourceNotFoundError:
        pass
    endpoint = client.online_endpoints.begin_create_or_update(spec.to_endpoint()).result()
    get_run_logger().info("Created endpoint %s at %s", endpoint.name, endpoint.scoring_uri)
    return EndpointRef.of(endpoint)


@task(name="get_endpoint", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def get_endpoint(workspace: str, name: str) -> EndpointRef | None:
    """The endpoint's traffic, mirror traffic and tags, or None when there is no endpoint of that name.

    Example:
        ```python
        endpoint = get_endpoint("local", "diabetes-ep")
        live = max(endpoint.traffic, key=endpoint.traffic.get) if endpoint and endpoint.traffic else None
        ```
    """
    try:
        return EndpointRef.of(get_client(workspace).online_endpoints.get(name))
    except ResourceNotFoundError:
        return None


@task(name="tag_endpoint", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def tag_endpoint(workspace: str, endpoint_name: str, tags: dict[str, str | None]) -> EndpointRef:
    """Set the endpoint's tags named in ``tags``; a tag set to None is removed. Its other tags stay.

    Example:
        ```python
        tag_endpoint("local", "diabetes-ep", {"model.green": "azureml:diabetes-baseline:4", "model.blue": None})
        ```
    """
    client = get_client(workspace)
    endpoint = client.online_endpoints.get(endpoint_name)
    merged = {**(endpoint.tags or {}), **tags}
    endpoint.tags = {key: value for key, value in merged.items() if value is not None}
    return EndpointRef.of(client.online_endpoints.begin_create_or_update(endpoint).result())


@task(name="create_deployment", **TRANSIENT_RETRIES)
def create_deployment(workspace: str, spec: DeploymentSpec) -> DeploymentRef:
    """Deploy a model and wait until it answers its readiness probe; a deployment already serving this spec is kept.

    A deployment that fails to start (a ``score.py`` whose ``init()`` raises) fails the task with the end of its log.

    Example:
        ```python
        green = create_deployment("local", DeploymentSpec(
            name="green", endpoint_name="diabetes-ep", model="azureml:diabetes-baseline:3"))
        ```
    """
    client = get_client(workspace)
    digest = spec.digest()
    existing = _deployment(client, spec)
    if existing is not None and (existing.tags or {}).get(DEPLOYMENT_FINGERPRINT_TAG) == digest \
            and existing.provisioning_state == "Succeeded":
        get_run_logger().info("Deployment %s/%s already serves this spec", spec.endpoint_name, spec.name)
        return _deployment_ref(existing, created=False)
    poller = client.online_deployments.begin_create_or_update(spec.to_deployment())  # a bad spec is refused here
    try:
        deployment = poller.result()
    except Exception as error:
        if is_transient(error):
            raise
        # the user's to fix (the model, score.py, the environment): the end of its log says how
        raise RuntimeError(f"Deployment {spec.endpoint_name}/{spec.name} failed to start: {error}\n"
                           f"{_log_tail(client, spec)}") from None
    get_run_logger().info("Deployment %s/%s is ready (%s instance(s))", spec.endpoint_name, spec.name, deployment.instance_count)
    return _deployment_ref(deployment, created=True)


@task(name="set_traffic", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def set_traffic(workspace: str, endpoint_name: str, traffic: dict[str, int]) -> EndpointRef:
    """Split the endpoint's live traffic (percentages summing to 100, or all 0).

    Example:
        ```python
        set_traffic("local", "diabetes-ep", {"blue": 90, "green": 10})
        ```
    """
    return _update_endpoint(workspace, endpoint_name, traffic=traffic)


@task(name="set_mirror_traffic", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def set_mirror_traffic(workspace: str, endpoint_name: str, mirror_traffic: dict[str, int]) -> EndpointRef:
    """Copy a share of live requests to one deployment that takes no live traffic (at most 50%); ``{}`` stops it.

    Example:
        ```python
        set_mirror_traffic("local", "diabetes-ep", {"green": 10})
        ```
    """
    return _update_endpoint(workspace, endpoint_name, mirror_traffic=mirror_traffic)


@task(name="invoke_endpoint", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def invoke_endpoint(workspace: str, endpoint_name: str, request: dict, deployment_name: str | None = None) -> Any:
    """Score ``request`` (Azure's ``{"input_data": ...}`` or MLflow's format) and return the parsed answer.

    Example:
        ```python
        invoke_endpoint("local", "diabetes-ep", {"input_data": {"columns": [...], "data": [[...]]}}, "green")
        ```
    """
    return score_on_deployment(workspace, endpoint_name, deployment_name, request)


def score_on_deployment(workspace: str, endpoint_name: str, deployment_name: str | None, request: dict) -> Any:
    """``ml_client.online_endpoints.invoke`` with the request written to a file, as it takes one; the parsed answer."""
    client = get_client(workspace)
    with tempfile.TemporaryDirectory(prefix="amlflows-request-") as folder:
        request_file = Path(folder) / "request.json"
        request_file.write_text(json.dumps(request))
        answer = client.online_endpoints.invoke(
            endpoint_name=endpoint_name, request_file=str(request_file), deployment_name=deployment_name
        )
    return json.loads(answer)


@task(name="read_deployment_figures", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def read_deployment_figures(workspace: str, endpoint_name: str, deployment_name: str, window_seconds: float = 60) -> DeploymentFigures:
    """Requests, failures and latency percentiles of a deployment over the last ``window_seconds``.

    On localml, the endpoint's router counts them, request by request, up to now. On Azure, they are read from the
    metrics Azure Monitor keeps for the endpoint (``RequestsPerMinute`` by status code, ``RequestLatency_P50``...
    ``_P99``, each filtered on the deployment; see ``tasks/azure_metrics.py``), with the workspace client's
    credential. Those come in one-minute buckets and reach Azure Monitor a minute or more late: the window is
    rounded up to whole minutes ending at the start of the current minute (``window_seconds`` of the figures says
    how long it was), its latest minutes may still be incomplete or missing, and each latency percentile is the
    window's worst minute. A rollout step should let traffic run for the window plus a few minutes before judging.

    Example:
        ```python
        figures = read_deployment_figures("local", "diabetes-ep", "green", window_seconds=120)
        print(figures.failure_rate, figures.latency_ms["p95"])
        ```
    """
    return deployment_figures(workspace, endpoint_name, deployment_name, window_seconds)


def deployment_figures(workspace: str, endpoint_name: str, deployment_name: str, window_seconds: float) -> DeploymentFigures:
    """The figures ``read_deployment_figures`` returns, for code that reads them in a loop of its own (a rollout step)."""
    client = get_client(workspace)
    if not is_local_client(client):
        resource_id = endpoint_resource_id(client.subscription_id, client.resource_group_name, client.workspace_name,
                                           endpoint_name)
        figures = read_figures(azure_metrics_client(client), resource_id, deployment_name, window_seconds)
        return DeploymentFigures(deployment=deployment_name, **figures)
    figures = client.online_deployments.get_live_figures(deployment_name, endpoint_name, window_seconds=window_seconds)
    return DeploymentFigures(deployment=deployment_name, **figures)


@task(name="delete_deployment", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def delete_deployment(workspace: str, endpoint_name: str, deployment_name: str) -> bool:
    """Delete a deployment that takes no traffic; False when there was none of that name.

    Example:
        ```python
        delete_deployment("local", "diabetes-ep", "blue")
        ```
    """
    client = get_client(workspace)
    try:
        client.online_deployments.begin_delete(name=deployment_name, endpoint_name=endpoint_name).result()
    except ResourceNotFoundError:
        return False
    get_run_logger().info("Deleted deployment %s/%s", endpoint_name, deployment_name)
    return True


def _update_endpoint(workspace: str, endpoint_name: str, **changes: dict[str, int]) -> EndpointRef:
    client = get_client(workspace)
    endpoint = client.online_endpoints.get(endpoint_name)
    for name, value in changes.items():
        setattr(endpoint, name, value)
    updated = client.online_endpoints.begin_create_or_update(endpoint).result()
    get_run_logger().info("Endpoint %s: traffic %s, mirror %s", endpoint_name, updated.traffic, updated.mirror_traffic or {})
    return EndpointRef.of(updated)


def _deployment(client: Any, spec: DeploymentSpec) -> Any | None:
    try:
        return client.online_deployments.get(name=spec.name, endpoint_name=spec.endpoint_name)
    except ResourceNotFoundError:
        return None


def _deployment_ref(deployment: Any, created: bool) -> DeploymentRef:
    model = deployment.model if isinstance(deployment.model, str) or deployment.model is None else deployment.model.id
    return DeploymentRef(name=deployment.name, endpoint_name=deployment.endpoint_name, model=model,
                         instance_count=deployment.instance_count, provisioning_state=deployment.provisioning_state,
                         created=created)


def _log_tail(client: Any, spec: DeploymentSpec, lines: int = 30) -> str:
    try:
        return client.online_deployments.get_logs(name=spec.name, endpoint_name=spec.endpoint_name, lines=lines)
    except Exception:  # the log is a courtesy in an error message already on its way
        return ""
