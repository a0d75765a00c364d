"""``ml_client.batch_endpoints``: named entry points that start batch scoring jobs with one of their deployments.

An endpoint is a catalog row (its description, tags and default deployment); ``invoke`` checks the deployment and
the input at once, then submits the job that scores (``localml.batch.submit``), which ``ml_client.jobs`` follows.
"""

from __future__ import annotations

from typing import Any, Iterator

from azure.ai.ml import Input
from azure.ai.ml._restclient.arm_ml_service.models import BatchEndpointDefaults
from azure.ai.ml.entities import BatchEndpoint, BatchJob

from amlkit import names
from localml.batch import DEPLOYMENT_KIND, ENDPOINT_KIND, deployment_key, deployment_rows, endpoint_row, save_endpoint
from localml.batch import submit
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, not_found
from localml.pollers import DonePoller
from localml.workspace import LocalWorkspace

BATCH_JOB_TYPE = "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs"


class BatchEndpointOperations:
    def __init__(self, workspace: LocalWorkspace, deployments, jobs):
        self._workspace = workspace
        self._catalog = workspace.catalog
        self._deployments = deployments
        self._jobs = jobs

    def begin_create_or_update(self, endpoint: BatchEndpoint, **kwargs) -> DonePoller:
        """Create the endpoint, or change its description, tags or default deployment; ``.result()`` returns it."""
        if not isinstance(endpoint, BatchEndpoint):
            raise UnsupportedFeatureError(f"{type(endpoint).__name__} as a batch endpoint", "Use azure.ai.ml.entities.BatchEndpoint.")
        name = names.BATCH_ENDPOINT.check(endpoint.name)
        if str(endpoint.auth_mode or "aad_token").lower() != "aad_token":
            raise LocalMLValidationError(f"Batch endpoint '{name}': auth_mode {endpoint.auth_mode!r} is not allowed; batch "
                                         "endpoints take Microsoft Entra tokens only (auth_mode 'aad_token', the default).")
        default = _default_name(endpoint.defaults)
        if default:
            known = [row["name"] for row in deployment_rows(self._catalog, name)]
            if default.lower() not in {k.lower() for k in known}:
                raise LocalMLValidationError(
                    f"Batch endpoint '{name}': its default deployment '{default}' does not exist "
                    f"({'its deployments: ' + ', '.join(known) if known else 'it has no deployments'}). Create the deployment "
                    "with batch_deployments.begin_create_or_update first, then set endpoint.defaults = {'deployment_name': ...}."
                )
            default = next(k for k in known if k.lower() == default.lower())
        existing = endpoint_row(self._catalog, name)
        row = {
            "name": name, "description": endpoint.description, "tags": dict(endpoint.tags or {}),
            "properties": dict(endpoint.properties or {}), "defaults": {"deployment_name": default} if default else {},
            "provisioning_state": "Succeeded",
        }
        if existing and not default and existing.get("defaults"):
            row["defaults"] = existing["defaults"]  # an update that does not name a default keeps the one set
        save_endpoint(self._catalog, row)
        return DonePoller(self._to_entity(row))

    def get(self, name: str) -> BatchEndpoint:
        return self._to_entity(self._row(name))

    def list(self) -> Iterator[BatchEndpoint]:
        return iter([self._to_entity(row) for row in self._catalog.list_resources(ENDPOINT_KIND)])

    def begin_delete(self, name: str) -> DonePoller:
        """Forget the endpoint and its deployments; the jobs it started stay, as on Azure."""
        self._row(name)
        for row in deployment_rows(self._catalog, name):
            self._catalog.delete_resource(DEPLOYMENT_KIND, deployment_key(name, row["name"]))
        self._catalog.delete_resource(ENDPOINT_KIND, name)
        return DonePoller(None)

    # -- jobs --------------------------------------------------------------------------------
    def invoke(self, endpoint_name: str, *, deployment_name: str | None = None, inputs: dict[str, Input] | None = None,
               **kwargs: Any) -> BatchJob:
        """Start a job scoring the input's files with ``deployment_name`` (the endpoint's default otherwise).

        Give the data as ``input=Input(type="uri_folder", path=...)`` or ``inputs={"name": Input(...)}``: a data asset
        (``azureml:name:version`` or ``data.id``), an ``azureml://datastores/...`` folder or a local folder. The job
        writes ``score`` (a folder); follow it with ``ml_client.jobs``.
        """
        row = self._row(endpoint_name)
        deployment = self._deployment(row, deployment_name)
        key, data = _one_input(endpoint_name, kwargs.pop("input", None), inputs)
        if kwargs.get("outputs"):
            raise UnsupportedFeatureError("invoke(outputs=...) yet", "The job writes its output 'score' to the default datastore.")
        job = submit.submit(self._workspace, self._jobs, row, deployment, key, data,
                            job_name=kwargs.get("job_name"), experiment_name=kwargs.get("experiment_name"))
        return BatchJob(id=job.id, name=job.name, type=BATCH_JOB_TYPE, status=job.status)

    def list_jobs(self, endpoint_name: str) -> list[BatchJob]:
        """The jobs this endpoint started, oldest first."""
        self._row(endpoint_name)
        names_ = [r["name"] for r in self._catalog.list_jobs() if (r["record"].get("batch") or {}).get("endpoint") == endpoint_name]
        jobs = [self._jobs.get(name) for name in names_]
        return [BatchJob(id=job.id, name=job.name, type=BATCH_JOB_TYPE, status=job.status) for job in jobs]

    # -- helpers -----------------------------------------------------------------------------
    def _row(self, name: str) -> dict:
        row = endpoint_row(self._catalog, name or "")
        if row is None:
            raise not_found("Batch endpoint", name, known=[r["name"] for r in self._catalog.list_resources(ENDPOINT_KIND)])
        return row

    def _deployment(self, endpoint: dict, deployment_name: str | None) -> dict:
        """The deployment an invoke runs: the one named, else the endpoint's default (Azure's messages, and what to do)."""
        name = endpoint["name"]
        known = [row["name"] for row in deployment_rows(self._catalog, name)]
        if not known:
            raise LocalMLValidationError(f"No deployment exists for this endpoint ('{name}'): create one with "
                                         "batch_deployments.begin_create_or_update first.")
        chosen = deployment_name or (endpoint.get("defaults") or {}).get("deployment_name")
        if not chosen:
            raise LocalMLValidationError(
                f"Batch endpoint '{name}' has no default deployment and invoke named none. Name one "
                f"(invoke(..., deployment_name='{known[0]}')) or set the default: endpoint.defaults = "
                f"{{'deployment_name': '{known[0]}'}}; batch_endpoints.begin_create_or_update(endpoint). Its deployments: {', '.join(known)}."
            )
        if chosen.lower() not in {k.lower() for k in known}:
            raise LocalMLValidationError(f"Deployment name {chosen} not found for this endpoint ('{name}'); its deployments: "
                                         f"{', '.join(known)}.")
        return self._deployments.row(name, chosen)

    def _to_entity(self, row: dict) -> BatchEndpoint:
        default = (row.get("defaults") or {}).get("deployment_name")
        endpoint = BatchEndpoint(
            name=row["name"],
            description=row["description"],
            tags=row["tags"],
            properties=row["properties"],
            auth_mode="aad_token",
            # what Azure's get returns: the REST object, so endpoint.defaults.deployment_name reads and sets
            defaults=BatchEndpointDefaults(deployment_name=default),
            provisioning_state=row["provisioning_state"],
        )
        endpoint._id = (f"/subscriptions/local/resourceGroups/local/providers/Microsoft.MachineLearningServices/workspaces/"
                        f"{self._workspace.name}/batchEndpoints/{row['name']}")
        return endpoint


def _default_name(defaults: Any) -> str | None:
    """The default deployment of ``endpoint.defaults``: a dict (as users write it) or Azure's REST object (from get)."""
    if not defaults:
        return None
    if isinstance(defaults, dict) and not isinstance(defaults, BatchEndpointDefaults):
        return defaults.get("deployment_name") or defaults.get("deploymentName")
    return getattr(defaults, "deployment_name", None)


def _one_input(endpoint: str, single: Input | None, inputs: dict[str, Input] | None) -> tuple[str, Input]:
    """The one data input a model deployment scores: ``input=`` or a one-entry ``inputs=``."""
    if single is not None and inputs:
        raise LocalMLValidationError(f"invoke of batch endpoint '{endpoint}' got both input= and inputs=: give one.")
    given = {"input_data": single} if single is not None else dict(inputs or {})
    if len(given) != 1:
        raise LocalMLValidationError(
            f"invoke of batch endpoint '{endpoint}' needs one data input, got {len(given)} ({', '.join(given) or 'none'}): "
            "give input=Input(type='uri_folder', path=...) or inputs={'data': Input(...)}; a model deployment scores one input."
        )
    key, value = next(iter(given.items()))
    if not isinstance(value, Input) or str(value.type) not in ("uri_folder", "uri_file"):
        raise LocalMLValidationError(
            f"Input '{key}' of the invoke of batch endpoint '{endpoint}' is {getattr(value, 'type', type(value).__name__)!r}; "
            "a model deployment scores a uri_folder (every file in it) or a uri_file."
        )
    return key, value
