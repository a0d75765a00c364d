"""AutoML: a typed spec for Azure's classification / regression jobs, and reading their results.

Submit and wait with ``tasks.jobs.submit_job`` / ``wait_for_job``: an AutoML job is a job like any
other. What is particular to AutoML is read here: the leaderboard of trials (one MLflow child run
each) and the summary (best run, data guardrails, feature importance).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from pydantic import BaseModel, Field, model_validator

from amlkit.automl.settings import (
    CLASSIFICATION_ALGORITHMS,
    CLASSIFICATION_METRICS,
    MINIMIZED_METRICS,
    REGRESSION_ALGORITHMS,
    REGRESSION_METRICS,
    canonical,
)
from amlkit.references import parse_asset_reference
from tasks.jobs import InputSpec, JobSpec
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import download_run_artifact, get_client, tracking_client

# downloads are a few small files: MLflow's progress bars would only clutter the run log
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

SUMMARY_ARTIFACT = "outputs/automl_summary.json"
IMPORTANCE_IMAGE_ARTIFACT = "outputs/explanations/feature_importance.png"


class AutoMLJobSpec(JobSpec):
    """An AutoML classification or regression job as plain data; names are Azure's."""

    task: Literal["classification", "regression"] = "classification"
    training_data: InputSpec = Field(description="MLTable training data")
    target_column: str = Field(description="The column to predict")
    primary_metric: str | None = Field(None, description="Azure's metric name, e.g. AUC_weighted; task default if empty")
    validation_data: InputSpec | None = None
    test_data: InputSpec | None = None
    validation_data_size: float | None = Field(None, gt=0, lt=1)
    test_data_size: float | None = Field(None, gt=0, lt=1)
    n_cross_validations: int | None = Field(None, ge=2)
    timeout_minutes: float = Field(15, gt=0)
    trial_timeout_minutes: float | None = Field(None, gt=0)
    max_trials: int | None = Field(None, ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    enable_early_termination: bool = True
    exit_score: float | None = None
    allowed_algorithms: list[str] = Field(default_factory=list)
    blocked_algorithms: list[str] = Field(default_factory=list)
    enable_stack_ensemble: bool = False
    enable_vote_ensemble: bool = False
    featurization: Literal["auto", "off"] = "auto"
    blocked_transformers: list[str] = Field(default_factory=list)
    column_purposes: dict[str, str] = Field(default_factory=dict)
    enable_model_explainability: bool = True
    compute: str | None = None
    display_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "AutoMLJobSpec":
        for key, value in self.data_inputs().items():
            if value.type != "mltable":
                raise ValueError(
                    f"AutoML {key} must be MLTable data (type 'mltable'), got '{value.type}'. "
                    "Point at a folder with an MLTable file, or an mltable data asset."
                )
        metrics = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        if self.primary_metric is not None:
            self.primary_metric = canonical(self.primary_metric, metrics, f"primary metric for {self.task}")
        algorithms = CLASSIFICATION_ALGORITHMS if self.task == "classification" else REGRESSION_ALGORITHMS
        self.allowed_algorithms = [canonical(a, algorithms, f"{self.task} algorithm") for a in self.allowed_algorithms]
        self.blocked_algorithms = [canonical(a, algorithms, f"{self.task} algorithm") for a in self.blocked_algorithms]
        self._check_local_paths()
        return self

    @property
    def maximize(self) -> bool:
        return self.primary_metric not in MINIMIZED_METRICS

    def data_inputs(self) -> dict[str, InputSpec]:
        inputs = {"training_data": self.training_data, "validation_data": self.validation_data, "test_data": self.test_data}
        return {k: v for k, v in inputs.items() if v is not None}

    def with_data_inputs(self, inputs: dict[str, InputSpec]) -> "AutoMLJobSpec":
        return self.model_copy(update=inputs)

    def to_job(self, name: str | None = None) -> Any:
        """The ``azure.ai.ml.automl`` job entity this spec describes."""
        from azure.ai.ml import Input, automl

        def data(value: InputSpec | None):
            return None if value is None else Input(type=value.type, path=value.path)

        factory = automl.classification if self.task == "classification" else automl.regression
        job = factory(
            training_data=data(self.training_data),
            validation_data=data(self.validation_data),
            test_data=data(self.test_data),
            target_column_name=self.target_column,
            primary_metric=self.primary_metric,
            validation_data_size=self.validation_data_size,
            test_data_size=self.test_data_size,
            n_cross_validations=self.n_cross_validations,
            enable_model_explainability=self.enable_model_explainability,
            compute=self.compute,
            experiment_name=self.experiment_name,
            display_name=self.display_name,
            tags=self.tags,
            name=name,
        )
        job.set_limits(
            timeout_minutes=self.timeout_minutes,
            trial_timeout_minutes=self.trial_timeout_minutes,
            max_trials=self.max_trials,
            max_concurrent_trials=self.max_concurrent_trials,
            enable_early_termination=self.enable_early_termination,
            exit_score=self.exit_score,
        )
        job.set_training(
            allowed_training_algorithms=self.allowed_algorithms or None,
            blocked_training_algorithms=self.blocked_algorithms or None,
            enable_stack_ensemble=self.enable_stack_ensemble,
            enable_vote_ensemble=self.enable_vote_ensemble,
        )
        job.set_featurization(
            mode=self.featurization,
            blocked_transformers=self.blocked_transformers or None,
            column_name_and_types=self.column_purposes or None,
        )
        return job


class Trial(BaseModel):
    run_id: str
    algorithm: str
    score: float | None = Field(description="The primary metric")
    metrics: dict[str, float]
    duration_seconds: float | None = None


class AutoMLSummary(BaseModel):
    best_run_id: str | None
    algorithm: str | None
    primary_metric: str | None
    score: float | None
    metrics: dict[str, float] = Field(default_factory=dict)
    guardrails: list[dict[str, str]] = Field(default_factory=list)
    feature_importance: dict[str, float] = Field(default_factory=dict)
    importance_png: bytes | None = Field(None, description="The feature importance chart, when explanations were made")


@task(name="automl_leaderboard", **TRANSIENT_RETRIES)
def automl_leaderboard(workspace: str, job_name: str, primary_metric: str) -> list[Trial]:
    """The AutoML job's trials (its MLflow child runs), best first by the primary metric.

    Example:
        ```python
        board = automl_leaderboard("local", job.name, "AUC_weighted")
        board[0].algorithm, board[0].score
        ```
    """
    tracking = tracking_client(workspace)
    parent = tracking.get_run(job_name)
    runs = tracking.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job_name}'", max_results=5000
    )
    trials = [
        Trial(
            run_id=run.info.run_id,
            algorithm=run.data.tags.get("run_algorithm") or run.data.params.get("algorithm", "?"),
            score=run.data.metrics.get(primary_metric),
            metrics=dict(run.data.metrics),
            duration_seconds=(run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
        )
        for run in runs
    ]
    descending = primary_metric not in MINIMIZED_METRICS
    trials.sort(key=lambda t: (t.score is None, -(t.score or 0) if descending else (t.score or 0)))
    return trials


@task(name="automl_summary", **TRANSIENT_RETRIES)
def automl_summary(workspace: str, job_name: str) -> AutoMLSummary:
    """The best run, its metrics (``test_*`` when test data was held out), the data guardrails and
    the feature importance of an AutoML job.

    Example:
        ```python
        summary = automl_summary("local", job.name)
        [g["status"] for g in summary.guardrails]     # ["Done", "Passed", ...]
        ```
    """
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = download_run_artifact(workspace, job_name, SUMMARY_ARTIFACT, folder)
        except ValueError:
            get_run_logger().warning("Job %s has no %s: guardrails and importances are not available", job_name, SUMMARY_ARTIFACT)
            run = tracking_client(workspace).get_run(job_name)
            best = run.data.tags.get("automl_best_child_run_id")
            return AutoMLSummary(best_run_id=best, algorithm=None, primary_metric=None, score=None, metrics=dict(run.data.metrics))
        summary = json.loads(path.read_text())
        image = None
        if summary.get("explanation"):
            image = download_run_artifact(workspace, job_name, IMPORTANCE_IMAGE_ARTIFACT, folder).read_bytes()
    return AutoMLSummary(
        best_run_id=summary["best_child_run_id"],
        algorithm=summary["best_algorithm"],
        primary_metric=summary["primary_metric"],
        score=summary["best_score"],
        metrics=summary["metrics"],
        guardrails=summary["guardrails"],
        feature_importance=summary.get("explanation") or {},
        importance_png=image,
    )


def check_training_data(path: str, target_column: str, task: str) -> None:
    """Apply AutoML's data checks to a local MLTable folder: a clear error before anything is submitted.

    Data already in a workspace (``azureml:...``) is checked by the workspace at submission.
    """
    from amlkit.automl.featurization import check_training_table
    from amlkit.automl.settings import AutoMLSettings
    from amlkit.mltable import load_mltable
    from amlkit.references import is_local_path

    if not is_local_path(path):
        return
    folder = Path(path)
    if not folder.exists():
        raise ValueError(f"Data path '{path}' not found (looked in {Path.cwd()}). Give an MLTable folder or azureml:<name>:<version>.")
    if not (folder / "MLTable").is_file():
        raise ValueError(
            f"AutoML needs MLTable data, and '{path}' is not a folder with an MLTable file. "
            "Put the data file in a folder next to an MLTable file that reads it (see examples/data/diabetes)."
        )
    settings = AutoMLSettings(task=task, target_column=target_column, primary_metric="", estimators=[])
    check_training_table(load_mltable(folder), settings)


@task(name="automl_job_of", **TRANSIENT_RETRIES)
def automl_job_of(workspace: str, baseline: str) -> str:
    """The AutoML job behind ``baseline``: a job name, or a model it registered (``azureml:<name>:<version>``
    or ``azureml:<name>@latest``).

    Example:
        ```python
        automl_job_of("local", "azureml:diabetes-baseline@latest")   # "diabetes-automl-52afc497a9e8"
        ```
    """
    if not baseline.startswith("azureml:"):
        return baseline
    reference = parse_asset_reference(baseline)
    if reference is None:
        name = baseline[len("azureml:"):]
        raise ValueError(f"Model reference '{baseline}' names no version: use azureml:{name}:<version> or azureml:{name}@latest.")
    model = get_client(workspace).models.get(reference.name, version=reference.version, label=reference.label)
    job = getattr(model, "job_name", None) or (model.tags or {}).get("job_name")
    if not job:
        raise ValueError(f"Model {model.name}:{model.version} was not registered from a job; give the AutoML job's name instead.")
    return job


class GeneratedCode(BaseModel):
    """The training script AutoML wrote for its best model, saved locally, and what it was made from."""

    automl_job: str
    best_run: str
    algorithm: str
    task: Literal["classification", "regression"]
    target_column: str
    primary_metric: str
    score: float | None = Field(description="The best run's primary metric on validation data")
    folder: str = Field(description="Local folder holding script.py and conda_env.yml")
    script: str
    environment_file: str
    hyperparameters: dict[str, Any] = Field(description="The script's options and the values AutoML chose")
    data_inputs: dict[str, str] = Field(description="The AutoML job's data (training_data, ...) as asset references")
    studio_url: str | None = None


@task(name="generated_training_code", **TRANSIENT_RETRIES)
def generated_training_code(workspace: str, automl_job: str, folder: str = "generated_code", keep_edited: bool = False) -> GeneratedCode:
    """Save the training script of an AutoML job's best model (``outputs/generated_code`` of its best run)
    to ``<folder>/<automl_job>/``, to run as it is, with other options, or edited.

    A script there that differs from the generated one was edited by someone: it is never overwritten.
    With ``keep_edited`` it is kept quietly (the caller runs the edited script); without, the task fails
    and asks for the edited copy to be passed as the script to run.

    Example:
        ```python
        code = generated_training_code("local", "diabetes-automl-52afc497a9e8")
        code.script            # "generated_code/diabetes-automl-52afc497a9e8/script.py"
        code.hyperparameters   # {"learning_rate": 0.057, "num_leaves": 4, ...}
        ```
    """
    from amlkit.automl.generated_code import ENVIRONMENT_FILE, SCRIPT_FILE

    job, best_run = _completed_automl_job(workspace, automl_job)
    target = Path(folder) / automl_job
    _save_generated_code(workspace, automl_job, best_run, target, keep_edited)
    made_from = json.loads((target / "generated_from.json").read_text())
    inputs = {key: getattr(job, key) for key in ("training_data", "validation_data", "test_data")}
    get_run_logger().info("The training script of %s's best model (%s) is in %s", automl_job, made_from["algorithm"], target)
    return GeneratedCode(
        automl_job=automl_job,
        best_run=best_run,
        algorithm=made_from["algorithm"],
        task=made_from["task"],
        target_column=made_from["target_column"],
        primary_metric=made_from["primary_metric"],
        score=made_from["score"],
        folder=str(target),
        script=str(target / SCRIPT_FILE),
        environment_file=str(target / ENVIRONMENT_FILE),
        hyperparameters=made_from["hyperparameters"],
        data_inputs={key: _asset_reference(value.path) for key, value in inputs.items() if value is not None},
        studio_url=job.studio_url,
    )


def _completed_automl_job(workspace: str, automl_job: str) -> tuple[Any, str]:
    """The AutoML job and its best run; only a completed AutoML job with a best run has a script to give."""
    job = get_client(workspace).jobs.get(automl_job)
    if getattr(job, "type", None) != "automl":
        raise ValueError(f"Job '{automl_job}' is a {job.type} job, not an AutoML job: give the AutoML job (or the model it registered).")
    if job.status != "Completed":
        raise ValueError(f"AutoML job '{automl_job}' is {job.status}; a training script exists once it has Completed.")
    best_run = tracking_client(workspace).get_run(automl_job).data.tags.get("automl_best_child_run_id")
    if not best_run:
        raise ValueError(f"AutoML job '{automl_job}' recorded no best run (automl_best_child_run_id): nothing to refine.")
    return job, best_run


def _save_generated_code(workspace: str, automl_job: str, best_run: str, target: Path, keep_edited: bool) -> None:
    """Copies the best run's generated code into ``target``, never over a script someone edited there."""
    from amlkit.automl.generated_code import FOLDER, SCRIPT_FILE

    with tempfile.TemporaryDirectory() as staging:
        try:
            downloaded = download_run_artifact(workspace, best_run, f"outputs/{FOLDER}", staging)
        except ValueError:
            raise ValueError(
                f"AutoML job '{automl_job}' has no generated training script (its best model may be an ensemble; "
                "see the job's log). Refine a job whose best model is a single algorithm."
            ) from None
        edited = target / SCRIPT_FILE
        if edited.exists() and edited.read_bytes() != (downloaded / SCRIPT_FILE).read_bytes():
            if not keep_edited:
                raise ValueError(
                    f"{edited} differs from the script AutoML generated: it was edited, and is left as it is. "
                    f"Run the edited script by passing it as the script, or delete {target} to get the generated one again."
                )
            (downloaded / SCRIPT_FILE).unlink()
        target.mkdir(parents=True, exist_ok=True)
        for file in downloaded.iterdir():
            shutil.copy2(file, target / file.name)


def _asset_reference(path: str) -> str:
    """The SDK's loader drops the ``azureml:`` prefix of an asset reference (``diabetes:1``); put it back."""
    path = str(path)
    return path if path.startswith(("azureml:", "http", "/")) else f"azureml:{path}"
