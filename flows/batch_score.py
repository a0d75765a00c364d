"""The ``batch_score`` flow: a folder of files scored by a model on a batch endpoint, the predictions registered.

    model version, input data (a local folder registered once per content)
    -> batch endpoint (created if missing) -> the model's deployment (re-used when unchanged, updated when the model
       or a setting changed) -> the endpoint's default
    -> invoke -> wait, with the job's log in the Prefect log -> download the predictions
    -> register them as a data version (for drift checks on predictions) -> report

Each run scores afresh and registers a new predictions version; a retry inside a run re-attaches to its job and
finds its registration, so it never scores twice or registers twice.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from pydantic import Field, field_validator

from flows.parameters import NAME_FIELDS, FlowParameters, reference_check
from tasks.batch import (
    BatchDeploymentSpec,
    BatchEndpointSpec,
    BatchScoringFailed,
    BatchScoreResult,
    batch_input_type,
    batch_job_failures,
    check_batch_input,
    download_predictions,
    ensure_batch_deployment,
    ensure_batch_endpoint,
    invoke_batch_endpoint,
    register_predictions,
    set_default_batch_deployment,
)
from tasks.compute import ComputeSpec, ensure_compute
from tasks.data import DataSpec, register_data
from tasks.jobs import wait_for_job
from tasks.models import check_model_reference, resolve_model
from tasks.names import BATCH_ENDPOINT
from tasks.reports import publish_batch_report


class BatchScoreParameters(FlowParameters):
    """Parameters of the ``batch_score`` flow; the defaults score the sample's patient files with the diabetes champion."""

    name_rules = {**NAME_FIELDS, "endpoint_name": BATCH_ENDPOINT}

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    model: str = Field("azureml:diabetes-baseline@champion", description="The model version that scores: azureml:NAME:VERSION, @champion or @latest (an MLflow model)")
    data: str = Field("examples/data/patient-data", description="What to score: a local folder of files (registered as DATA_NAME), azureml:NAME:VERSION, or an azureml:// URI")
    data_name: str = Field("patient-data", description="Name of the data asset a local folder is registered as")
    endpoint_name: str = Field("diabetes-batch", description="The batch endpoint (created if missing)")
    deployment_name: str = Field("classifier", description="The model's deployment on the endpoint (created, or updated when the model or a setting changed); made the endpoint's default")
    compute: str = Field("cpu-cluster", description="Compute cluster the scoring jobs run on (created if missing)")
    instance_count: int = Field(1, ge=1, description="Nodes a scoring job uses")
    max_concurrency_per_instance: int = Field(2, ge=1, description="Mini-batches scored at once on a node")
    mini_batch_size: int = Field(2, ge=1, description="Files in a mini-batch")
    max_retries: int = Field(3, ge=0, description="Tries of a failed or timed-out mini-batch after its first")
    timeout: int = Field(300, ge=1, description="Seconds a mini-batch may take before it is tried again")
    error_threshold: int = Field(-1, ge=-1, description="Failed files tolerated before the job fails; -1 tolerates any (they are reported)")
    output_file_name: str = Field("predictions.csv", description="The file the job writes the predictions to")
    logging_level: Literal["debug", "info", "warning"] = Field("info", description="What the job logs: warning (failures, retries, the summary), info (each mini-batch too) or debug")
    predictions_name: str = Field("diabetes-predictions", description="Name of the data asset the predictions are registered as, a version per run")
    output_folder: str = Field("batch_predictions", description="Where the predictions are downloaded, a folder per job")
    timeout_minutes: float = Field(30, gt=0, description="The job is canceled if it runs longer")

    _model_is_a_reference = reference_check(check_model_reference, "model")
    _data_can_be_scored = reference_check(check_batch_input, "data")

    @field_validator("output_file_name")
    @classmethod
    def _a_plain_file_name(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"'{value}' is not a file name: give a plain name such as predictions.csv (the job's output folder holds it).")
        return value

    def deployment(self, model: str) -> BatchDeploymentSpec:
        return BatchDeploymentSpec(
            name=self.deployment_name, endpoint_name=self.endpoint_name, model=model, compute=self.compute,
            instance_count=self.instance_count, max_concurrency_per_instance=self.max_concurrency_per_instance,
            mini_batch_size=self.mini_batch_size, max_retries=self.max_retries, timeout=self.timeout,
            error_threshold=self.error_threshold, output_file_name=self.output_file_name, logging_level=self.logging_level,
        )


@flow(name="batch_score")
def batch_score(params: BatchScoreParameters = BatchScoreParameters.defaults()) -> BatchScoreResult:
    """Score a folder of files with a model on a batch endpoint, and register the predictions as a data version."""
    params = params.validated()
    workspace = params.workspace
    model = resolve_model(workspace, params.model)  # an unknown model stops here: nothing created
    if "://" not in params.data:  # a local path is registered once per content; an asset reference is looked up
        data = register_data(workspace, DataSpec(name=params.data_name, path=params.data, type=batch_input_type(params.data)))
        data_input, data_type = data.reference, data.type
    else:
        data_input, data_type = params.data, "uri_folder"
    ensure_compute(workspace, ComputeSpec(name=params.compute, max_instances=max(2, params.instance_count)))
    ensure_batch_endpoint(workspace, BatchEndpointSpec(name=params.endpoint_name))
    deployment = ensure_batch_deployment(workspace, params.deployment(model.reference))
    set_default_batch_deployment(workspace, params.endpoint_name, params.deployment_name)
    job = invoke_batch_endpoint(workspace, params.endpoint_name, data_input, params.deployment_name, data_type)
    waited = wait_for_job(workspace, job.name, timeout_seconds=params.timeout_minutes * 60)
    failed = batch_job_failures(workspace, job.name)
    predictions = download_predictions(workspace, job.name, params.output_file_name, params.output_folder)
    if predictions.rows == 0:  # nothing to register: a version of no rows would look like a result to a drift check
        raise BatchScoringFailed(
            f"Batch job {job.name} scored no rows of {data_input}"
            + (f": {failed} mini-batch(es) failed" if failed else "")
            + ". Its log above says why (a mini-batch's error is logged with its files); the full logs stay with the job: "
            f"ml_client.jobs.download('{job.name}', all=True). Nothing was registered."
        )
    reference = register_predictions(workspace, params.predictions_name, job.name, predictions.table, {
        "model": model.reference, "data": data_input, "batch.endpoint": params.endpoint_name,
        "batch.deployment": params.deployment_name})
    result = BatchScoreResult(
        job_name=job.name, status=waited.status, endpoint=params.endpoint_name, deployment=params.deployment_name,
        deployment_outcome=deployment.outcome, model=model.reference, data=data_input, rows=predictions.rows,
        files=predictions.files, failed_mini_batches=failed,
        class_balance=predictions.class_balance, predictions=reference, predictions_path=predictions.path,
        studio_url=waited.studio_url, duration_seconds=waited.duration_seconds,
    )
    publish_batch_report(result, predictions.first_rows)
    get_run_logger().info("Scored %d rows of %s with %s: predictions %s", result.rows, data_input, model.reference, reference)
    return result
