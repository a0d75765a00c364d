"""The ``baseline`` flow: AutoML finds a trustworthy first model, which is registered.

    register data -> ensure compute -> AutoML job -> wait -> leaderboard and summary -> register best -> report
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from flows.parameters import FlowParameters
from tasks.automl import AutoMLJobSpec, automl_leaderboard, automl_summary, check_training_data
from tasks.compute import ComputeSpec, cluster_name, ensure_compute
from tasks.data import DataSpec, register_data
from tasks.jobs import InputSpec, submit_job, wait_for_job
from tasks.models import ModelSpec, register_model
from tasks.reports import publish_baseline_report

DEFAULT_METRICS = {"classification": "AUC_weighted", "regression": "normalized_root_mean_squared_error"}
#: Minutes a job may take beyond its AutoML budget (start-up, featurization, saving, explaining).
WAIT_GRACE_MINUTES = 10


class BaselineParameters(FlowParameters):
    """Parameters of the ``baseline`` flow; the defaults run on the bundled DP-100 diabetes sample."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    data: str = Field("examples/data/diabetes", description="MLTable folder, or azureml:NAME:VERSION of an mltable asset")
    data_name: str = Field("diabetes", description="Name of the data asset a local folder is registered as")
    target_column: str = Field("Diabetic", description="The column to predict")
    task: Literal["classification", "regression"] = Field("classification", description="AutoML task")
    primary_metric: str | None = Field(None, description="Azure's metric name; AUC_weighted / normalized_root_mean_squared_error if empty")
    timeout_minutes: float = Field(2, gt=0, description="Time budget of the whole AutoML search")
    trial_timeout_minutes: float | None = Field(None, gt=0, description="Time limit of one trial")
    max_trials: int | None = Field(None, ge=1, description="Stop after this many trials")
    exit_score: float | None = Field(None, description="Stop once a trial reaches this primary metric value")
    enable_early_termination: bool = Field(True, description="Stop when the search stops improving")
    allowed_algorithms: list[str] = Field([], description="Azure algorithm names, e.g. LightGBM XGBoostClassifier")
    blocked_algorithms: list[str] = Field([], description="Azure algorithm names to leave out")
    n_cross_validations: int | None = Field(None, ge=2, description="Folds; chosen from the data size if empty")
    test_data_size: float | None = Field(0.3, gt=0, lt=1, description="Fraction held out to test the best model")
    enable_model_explainability: bool = Field(True, description="Explain the best model (feature importance)")
    compute: str = Field("cpu-cluster", description="Compute cluster (created if missing); 'local' for none")
    max_instances: int = Field(2, ge=1, description="Nodes of a new cluster (localml: jobs at once)")
    experiment_name: str = Field("diabetes-automl", description="MLflow / Azure ML experiment")
    model_name: str = Field("diabetes-baseline", description="Name the best model is registered as")
    refresh: bool = Field(False, description="Search again even if an identical job already ran")

    @model_validator(mode="after")
    def _check(self) -> "BaselineParameters":
        self.primary_metric = self.primary_metric or DEFAULT_METRICS[self.task]
        check_training_data(self.data, self.target_column, self.task)
        self.job_spec("azureml:validation:1")  # unknown metric or algorithm names fail here
        return self

    def job_spec(self, data_reference: str) -> AutoMLJobSpec:
        return AutoMLJobSpec(
            task=self.task,
            training_data=InputSpec(type="mltable", path=data_reference),
            target_column=self.target_column,
            primary_metric=self.primary_metric,
            test_data_size=self.test_data_size,
            n_cross_validations=self.n_cross_validations,
            timeout_minutes=self.timeout_minutes,
            trial_timeout_minutes=self.trial_timeout_minutes,
            max_trials=self.max_trials,
            exit_score=self.exit_score,
            enable_early_termination=self.enable_early_termination,
            allowed_algorithms=self.allowed_algorithms,
            blocked_algorithms=self.blocked_algorithms,
            enable_model_explainability=self.enable_model_explainability,
            compute=cluster_name(self.compute),
            experiment_name=self.experiment_name,
        )


class BaselineResult(BaseModel):
    job_name: str
    best_run: str | None
    algorithm: str | None
    primary_metric: str
    score: float | None = Field(description="The primary metric on validation data")
    metrics: dict[str, float] = Field(description="Validation metrics, and test_* metrics on the held-out data")
    model: str = Field(description="Registered model reference, azureml:NAME:VERSION")
    data: str
    studio_url: str | None = None
    reused: bool


@flow(name="baseline")
def baseline(params: BaselineParameters = BaselineParameters.defaults()) -> BaselineResult:
    """Find a baseline model with AutoML and register the best one."""
    params = params.validated()
    workspace = params.workspace
    data = register_data(workspace, DataSpec(name=params.data_name, path=params.data, type="mltable"))
    if cluster_name(params.compute):
        ensure_compute(workspace, ComputeSpec(name=params.compute, max_instances=params.max_instances))
    job = submit_job(workspace, params.job_spec(data.reference), refresh=params.refresh)
    result = wait_for_job(workspace, job.name, timeout_seconds=(params.timeout_minutes + WAIT_GRACE_MINUTES) * 60)
    summary = automl_summary(workspace, job.name)
    leaderboard = automl_leaderboard(workspace, job.name, params.primary_metric)
    tags = {"job_name": job.name, "data": data.reference, "algorithm": str(summary.algorithm), "primary_metric": params.primary_metric}
    if summary.score is not None:
        tags["score"] = f"{summary.score:.4f}"
    model = register_model(
        workspace, ModelSpec(name=params.model_name, path=f"azureml://jobs/{job.name}/outputs/best_model", tags=tags)
    )
    publish_baseline_report(job.name, summary, leaderboard, model.reference, data.reference, result.studio_url, job.reused)
    return BaselineResult(
        job_name=job.name,
        best_run=summary.best_run_id,
        algorithm=summary.algorithm,
        primary_metric=params.primary_metric,
        score=summary.score,
        metrics=summary.metrics,
        model=model.reference,
        data=data.reference,
        studio_url=result.studio_url,
        reused=job.reused,
    )
