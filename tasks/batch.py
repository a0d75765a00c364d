"""Batch endpoints: make sure an endpoint and a model's deployment exist, make the deployment the default, score a
folder of files, fetch the predictions and register them as a data version.

Each task is one operation of ``ml_client.batch_endpoints`` / ``batch_deployments`` / ``jobs`` / ``data``, the same
on Azure and on localml. A deployment carries a fingerprint of what it serves (the model and its settings), so an
unchanged one is re-used and a changed model or setting updates it in place. An invocation is named after the
flow run that makes it, so a retry after a lost reply re-attaches to the job instead of scoring everything twice;
the predictions' registration is tagged with the job, so a retry never makes a second version.

The tasks that change or read an endpoint's state, and the invocation, are never cached (``NO_CACHE``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from amlkit.batch import files_to_score
from amlkit.hashing import content_hash
from amlkit.references import is_local_path
from tasks.data import check_data_reference
from tasks.endpoints import DEPLOYMENT_FINGERPRINT_TAG
from tasks.registration import FINGERPRINT_TAG, fingerprint, register_once
from tasks.retries import TRANSIENT_RETRIES, TransientFaultError, is_transient
from tasks.workspace import get_client

#: The output of a batch deployment's job that holds its predictions (Azure's name for it).
SCORE_OUTPUT = "score"
#: The endpoint's ``defaults`` key naming the deployment an invocation without ``deployment_name`` goes to.
DEFAULT_DEPLOYMENT_KEY = "deployment_name"
#: Rows of the predictions a report shows.
FIRST_ROWS = 10
#: The columns of a registered predictions table.
PREDICTION_COLUMNS = ("file", "row", "prediction")
#: Where a batch job's properties say how many of its mini-batches failed (localml's summary; Azure's jobs may not say).
FAILED_MINI_BATCH_PROPERTIES = ("mini_batches_failed", "failed_mini_batches")


class BatchScoringFailed(RuntimeError):
    """A batch job that ended without predictions to register (every mini-batch failed, within error_threshold)."""


class BatchEndpointSpec(BaseModel):
    name: str = Field(description="Batch endpoint name: 3-32 characters, a letter first, then letters, digits and '-'")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    def to_endpoint(self) -> Any:
        from azure.ai.ml.entities import BatchEndpoint

        return BatchEndpoint(name=self.name, description=self.description, tags=self.tags)


class BatchEndpointRef(BaseModel):
    name: str
    scoring_uri: str | None = None
    default_deployment: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(cls, endpoint: Any) -> "BatchEndpointRef":
        return cls(name=endpoint.name, scoring_uri=getattr(endpoint, "scoring_uri", None),
                   default_deployment=default_deployment_of(endpoint), tags=dict(endpoint.tags or {}))


class BatchDeploymentSpec(BaseModel):
    """A model's batch deployment as plain data: Azure's ``ModelBatchDeployment`` and its settings."""

    name: str = Field(description="Deployment name")
    endpoint_name: str
    model: str = Field(description="A registered model version: azureml:NAME:VERSION (an MLflow model: no scoring script)")
    compute: str = Field(description="The compute cluster the jobs run on")
    instance_count: int = Field(default=1, ge=1, description="Nodes of the cluster a job uses")
    max_concurrency_per_instance: int = Field(default=2, ge=1, description="Mini-batches scored at once on a node")
    mini_batch_size: int = Field(default=2, ge=1, description="Files in a mini-batch")
    max_retries: int = Field(default=3, ge=0, description="Tries of a failed or timed-out mini-batch after the first")
    timeout: int = Field(default=300, ge=1, description="Seconds a mini-batch may take")
    error_threshold: int = Field(default=-1, ge=-1, description="Failed files tolerated before the job fails; -1: any")
    output_file_name: str = Field(default="predictions.csv", description="The file of the predictions")
    logging_level: Literal["debug", "info", "warning"] = "info"
    environment_variables: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    def digest(self) -> str:
        """What the deployment serves and how: a changed model or setting changes it."""
        return fingerprint({"spec": self.model_dump(exclude={"tags"})})

    def to_deployment(self) -> Any:
        from azure.ai.ml.constants import BatchDeploymentOutputAction
        from azure.ai.ml.entities import BatchRetrySettings, ModelBatchDeployment, ModelBatchDeploymentSettings

        return ModelBatchDeployment(
            name=self.name, endpoint_name=self.endpoint_name, model=self.model, compute=self.compute,
            settings=ModelBatchDeploymentSettings(
                instance_count=self.instance_count, max_concurrency_per_instance=self.max_concurrency_per_instance,
                mini_batch_size=self.mini_batch_size, output_action=BatchDeploymentOutputAction.APPEND_ROW,
                output_file_name=self.output_file_name,
                retry_settings=BatchRetrySettings(max_retries=self.max_retries, timeout=self.timeout),
                error_threshold=self.error_threshold, logging_level=self.logging_level,
                environment_variables=self.environment_variables or None,
            ),
            tags={**self.tags, DEPLOYMENT_FINGERPRINT_TAG: self.digest()},
        )


class BatchDeploymentRef(BaseModel):
    name: str
    endpoint_name: str
    model: str | None = None
    outcome: Literal["created", "updated", "unchanged"]


class BatchJobRef(BaseModel):
    name: str
    status: str | None = None
    studio_url: str | None = None
    reattached: bool = Field(False, description="True when a job this flow run had started already was found")


class Predictions(BaseModel):
    """What a batch job predicted, in numbers small enough for a result and a report."""

    path: str = Field(description="The predictions file as the job wrote it, downloaded")
    table: str = Field(description="A folder holding the predictions as a table with a header (predictions.csv) and its MLTable")
    rows: int
    files: int = Field(description="Input files with at least one prediction")
    class_balance: dict[str, int] = Field(description="Rows per predicted class")
    first_rows: list[dict[str, Any]] = Field(default_factory=list)


class BatchScoreResult(BaseModel):
    job_name: str
    status: str
    endpoint: str
    deployment: str
    deployment_outcome: Literal["created", "updated", "unchanged"]
    model: str
    data: str = Field(description="The input data the job scored")
    rows: int = Field(description="Rows scored")
    files: int = Field(description="Input files with predictions")
    failed_mini_batches: int | None = Field(None, description="Mini-batches that failed, as the job reports them")
    class_balance: dict[str, int] = Field(default_factory=dict)
    predictions: str = Field(description="The predictions' data asset version: azureml:NAME:VERSION")
    predictions_path: str = Field(description="The predictions file, downloaded")
    studio_url: str | None = None
    duration_seconds: float | None = None


def default_deployment_of(endpoint: Any) -> str | None:
    """The deployment an endpoint's invocations go to by default (``endpoint.defaults.deployment_name``): the SDK
    holds ``defaults`` as a dict when the caller set it, as Azure's defaults object after a ``get``."""
    defaults = getattr(endpoint, "defaults", None)
    if isinstance(defaults, dict):
        return defaults.get(DEFAULT_DEPLOYMENT_KEY)
    return getattr(defaults, DEFAULT_DEPLOYMENT_KEY, None)


@task(name="ensure_batch_endpoint", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def ensure_batch_endpoint(workspace: str, spec: BatchEndpointSpec) -> BatchEndpointRef:
    """The batch endpoint, created unless one of that name exists (an existing one keeps its deployments and default).

    Example:
        ```python
        endpoint = ensure_batch_endpoint("local", BatchEndpointSpec(name="diabetes-batch"))
        endpoint.default_deployment   # None for a new endpoint
        ```
    """
    client = get_client(workspace)
    try:
        return BatchEndpointRef.of(client.batch_endpoints.get(spec.name))
    except ResourceNotFoundError:
        pass
    endpoint = client.batch_endpoints.begin_create_or_update(spec.to_endpoint()).result()
    get_run_logger().info("Created batch endpoint %s", endpoint.name)
    return BatchEndpointRef.of(endpoint)


@task(name="ensure_batch_deployment", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def ensure_batch_deployment(workspace: str, spec: BatchDeploymentSpec) -> BatchDeploymentRef:
    """The deployment of ``spec``: re-used when it already serves this model with these settings, updated in place
    when either changed, created when there is none of that name.

    Example:
        ```python
        deployment = ensure_batch_deployment("local", BatchDeploymentSpec(
            name="classifier", endpoint_name="diabetes-batch", model="azureml:diabetes-baseline:3", compute="cpu-cluster"))
        deployment.outcome   # "created", "updated" or "unchanged"
        ```
    """
    client = get_client(workspace)
    try:
        existing = client.batch_deployments.get(name=spec.name, endpoint_name=spec.endpoint_name)
    except ResourceNotFoundError:
        existing = None
    if existing is not None and (existing.tags or {}).get(DEPLOYMENT_FINGERPRINT_TAG) == spec.digest() \
            and getattr(existing, "provisioning_state", "Succeeded") in (None, "Succeeded"):
        get_run_logger().info("Batch deployment %s/%s already serves %s with these settings", spec.endpoint_name, spec.name, spec.model)
        return BatchDeploymentRef(name=spec.name, endpoint_name=spec.endpoint_name, model=spec.model, outcome="unchanged")
    client.batch_deployments.begin_create_or_update(spec.to_deployment()).result()
    outcome = "created" if existing is None else "updated"
    get_run_logger().info("Batch deployment %s/%s %s: %s, %d file(s) a mini-batch", spec.endpoint_name, spec.name, outcome,
                          spec.model, spec.mini_batch_size)
    return BatchDeploymentRef(name=spec.name, endpoint_name=spec.endpoint_name, model=spec.model, outcome=outcome)


@task(name="set_default_batch_deployment", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def set_default_batch_deployment(workspace: str, endpoint_name: str, deployment_name: str) -> BatchEndpointRef:
    """Make ``deployment_name`` the deployment the endpoint's invocations go to when they name none.

    Example:
        ```python
        set_default_batch_deployment("local", "diabetes-batch", "classifier").default_deployment   # "classifier"
        ```
    """
    client = get_client(workspace)
    endpoint = client.batch_endpoints.get(endpoint_name)
    if default_deployment_of(endpoint) == deployment_name:
        return BatchEndpointRef.of(endpoint)
    endpoint.defaults = {DEFAULT_DEPLOYMENT_KEY: deployment_name}
    updated = client.batch_endpoints.begin_create_or_update(endpoint).result()
    get_run_logger().info("Batch endpoint %s: %s is the default deployment now", endpoint_name, deployment_name)
    return BatchEndpointRef.of(updated)


def invocation_name(endpoint_name: str, deployment_name: str, data: str, run_id: str) -> str:
    """The name of the job a flow run's invocation starts: the same for a retry of that invocation, another for
    another run (a batch job is scored afresh each run: the files of a folder may have changed since)."""
    digest = hashlib.sha256(json.dumps([endpoint_name, deployment_name, data, run_id]).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^a-z0-9]+', '-', endpoint_name.lower()).strip('-')[:40]}-{digest}"


@task(name="invoke_batch_endpoint", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def invoke_batch_endpoint(workspace: str, endpoint_name: str, data: str, deployment_name: str | None = None,
                          data_type: Literal["uri_folder", "uri_file"] = "uri_folder") -> BatchJobRef:
    """Start a batch scoring job over ``data`` (a folder: azureml:NAME:VERSION, an azureml:// or https URI, or a
    local folder the SDK uploads) on the endpoint's ``deployment_name`` (its default when None).

    In a flow run, the job is named after the run: a retry after a lost reply finds the job its first try started
    instead of starting a second one; a job of that name that failed is followed by ``<name>-2``, ...

    Example:
        ```python
        job = invoke_batch_endpoint("local", "diabetes-batch", "azureml:patient-data:1", "classifier")
        wait_for_job("local", job.name)
        ```
    """
    from azure.ai.ml import Input

    client = get_client(workspace)
    base = invocation_name(endpoint_name, deployment_name or "", data, flow_run.id) if flow_run.id else None
    name = base
    for attempt in range(2, 100):
        existing = _find_job(client, name) if name else None
        if existing is None:
            break
        if existing.status not in ("Failed", "Canceled"):
            get_run_logger().info("Found batch job %s (%s), started earlier by this flow run", name, existing.status)
            return BatchJobRef(name=name, status=existing.status, studio_url=existing.studio_url, reattached=True)
        name = f"{base}-{attempt}"
    try:
        job = client.batch_endpoints.invoke(endpoint_name=endpoint_name, deployment_name=deployment_name,
                                            input=Input(type=data_type, path=data), **({"job_name": name} if name else {}))
    except Exception as error:
        if is_transient(error):
            raise TransientFaultError(
                f"Invoking batch endpoint {endpoint_name} met a transient fault: {str(error).rstrip('.')}. The job may have "
                f"started{f' as {name}' if name else ''}; a retry looks for it first."
            ) from error
        raise
    get_run_logger().info("Batch job %s started on %s/%s over %s", job.name, endpoint_name, deployment_name or "(default)", data)
    return BatchJobRef(name=job.name, status=getattr(job, "status", None), studio_url=getattr(job, "studio_url", None))


@task(name="download_predictions", **TRANSIENT_RETRIES)
def download_predictions(workspace: str, job_name: str, output_file_name: str, destination: str) -> Predictions:
    """Download a batch job's predictions to ``<destination>/<job_name>`` and read them: rows, the files they came
    from, the predicted class balance, the first rows; also written as a table with a header beside its MLTable.

    Example:
        ```python
        predictions = download_predictions("local", job.name, "predictions.csv", "batch_predictions")
        predictions.rows, predictions.class_balance   # 400, {"0": 262, "1": 138}
        ```
    """
    target = Path(destination) / job_name
    get_client(workspace).jobs.download(job_name, download_path=str(target), output_name=SCORE_OUTPUT)
    path = target / "named-outputs" / SCORE_OUTPUT / output_file_name
    if not path.is_file():
        found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
        raise FileNotFoundError(f"Batch job {job_name} wrote no {output_file_name} in its '{SCORE_OUTPUT}' output; the "
                                f"download holds {found or 'nothing'}. Was the deployment's output action summary_only?")
    rows = read_predictions(path)
    table = target / "predictions"
    write_prediction_table(rows, table)
    balance: dict[str, int] = {}
    for row in rows:
        balance[row["prediction"]] = balance.get(row["prediction"], 0) + 1
    return Predictions(path=str(path), table=str(table), rows=len(rows), files=len({row["file"] for row in rows}),
                       class_balance=dict(sorted(balance.items())), first_rows=rows[:FIRST_ROWS])


def read_predictions(path: str | Path) -> list[dict[str, str]]:
    """The rows of an MLflow model's batch predictions file as Azure writes it with ``append_row``: one line per
    input row, ``row, prediction, file`` and no header (a header line, if any, is skipped)."""
    rows = []
    with open(path, newline="") as handle:
        for number, fields in enumerate(csv.reader(handle)):
            if not fields:
                continue
            if number == 0 and "prediction" in [f.strip().lower() for f in fields]:
                continue
            if len(fields) < 3:
                raise ValueError(f"{path}, line {number + 1}: expected 'row, prediction, file', got {fields}")
            row, *prediction, file = (f.strip() for f in fields)
            rows.append({"file": Path(file).name, "row": row, "prediction": ",".join(prediction)})
    return rows


def write_prediction_table(rows: list[dict[str, str]], folder: Path) -> Path:
    """``folder/predictions.csv`` (file, row, prediction, with a header) and the ``MLTable`` that reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PREDICTION_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "MLTable").write_text(
        "paths:\n  - file: ./predictions.csv\ntransformations:\n  - read_delimited:\n      delimiter: ','\n"
        "      header: all_files_same_headers\n      encoding: utf8\n"
    )
    return folder


@task(name="register_predictions", **TRANSIENT_RETRIES)
def register_predictions(workspace: str, name: str, job_name: str, table: str, tags: dict[str, str]) -> str:
    """Register a batch job's predictions table (an MLTable folder) as a version of data asset ``name``, once per
    job: a retry finds the version its first try made. Returns ``azureml:NAME:VERSION``.

    Example:
        ```python
        register_predictions("local", "diabetes-predictions", job.name, predictions.table, {"model": model.reference})
        ```
    """
    from azure.ai.ml.entities import Data

    digest = fingerprint({"job": job_name, "content": content_hash(table)})
    entity = Data(name=name, path=table, type="mltable", tags={**tags, "batch.job": job_name},
                  description=f"Predictions of batch job {job_name}")
    asset, created = register_once(get_client(workspace).data, entity, digest, tag=FINGERPRINT_TAG)
    get_run_logger().info("%s predictions of %s as data asset %s:%s", "Registered" if created else "Found the",
                          job_name, asset.name, asset.version)
    return f"azureml:{asset.name}:{asset.version}"


@task(name="batch_job_failures", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def batch_job_failures(workspace: str, job_name: str) -> int | None:
    """How many mini-batches of a batch job failed, as the job reports it; None where it does not say.

    Example:
        ```python
        batch_job_failures("local", job.name)   # 0
        ```
    """
    job = get_client(workspace).jobs.get(job_name)
    properties = dict(getattr(job, "properties", None) or {})
    for key in FAILED_MINI_BATCH_PROPERTIES:
        if properties.get(key) not in (None, ""):
            return int(properties[key])
    return None



def _find_job(client: Any, name: str) -> Any | None:
    try:
        return client.jobs.get(name)
    except ResourceNotFoundError:
        return None


def check_batch_input(data: str) -> str:
    """What a batch job can score, checked without a workspace: a local folder holding files (or one file), a data
    asset reference (azureml:NAME:VERSION or @latest), or a URI (azureml://..., https://...). A ValueError that says
    what to give otherwise.

    Example:
        ```python
        check_batch_input("examples/data/patient-data")   # "examples/data/patient-data"
        check_batch_input("no/such/folder")   # ValueError: ... does not exist ...
        ```
    """
    if data.startswith("azureml:") and not data.startswith("azureml://"):
        try:
            check_data_reference(data)
        except ValueError as error:
            raise ValueError(f"{error} Or give a local folder of files to score.") from None
        return data
    if not is_local_path(data):
        return data
    path = Path(data).expanduser()
    if not path.exists():
        raise ValueError(f"Data path '{data}' does not exist (looked in {Path.cwd()}). Give a folder of files to score, "
                         "or azureml:<name>:<version>.")
    if path.is_dir() and not files_to_score(path):
        raise ValueError(f"Data folder '{data}' has no files to score. Put the files (CSV, one row per case) in it, "
                         "or give another folder.")
    return data


def batch_input_type(data: str) -> Literal["uri_folder", "uri_file"]:
    """A local file is scored as ``uri_file``; a folder, an asset or a URI as ``uri_folder``."""
    return "uri_file" if is_local_path(data) and Path(data).expanduser().is_file() else "uri_folder"
