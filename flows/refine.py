"""The ``refine`` flow: the training script AutoML generated for its best model is changed, run as a
command job, and its model registered only if it holds up against the AutoML model on the same held-out rows.

    AutoML job -> generated script -> (option overrides / your edited copy) -> command job -> wait
    -> primary metric logged? -> compare both models on the held-out rows -> register if the rule allows -> report
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from flows.parameters import FlowParameters
from flows.train import Hyperparameter, TrainParameters, start_job
from tasks.automl import GeneratedCode, automl_job_of, generated_training_code
from tasks.environments import EnvironmentSpec, check_conda_file, is_conda_file, register_environment
from tasks.evaluation import ModelComparison, RegistrationRule, RunArtifact, compare_models, registration_decision
from tasks.jobs import InputSpec, job_metrics, wait_for_job
from tasks.models import ModelSpec, check_model_reference, register_model
from tasks.reports import publish_refine_report
from tasks.scripts import check_arguments

MODEL_OUTPUT = "outputs/model"
#: The ``environment`` that means the conda specification AutoML generated next to the script.
GENERATED = "generated"


class RefineParameters(FlowParameters):
    """Parameters of the ``refine`` flow; the defaults refine the model the ``baseline`` flow registered."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    baseline: str = Field(
        "azureml:diabetes-baseline@latest",
        description="The AutoML job to refine: its name, or a model it registered (azureml:NAME:VERSION or @latest)",
    )
    hyperparameters: dict[str, Hyperparameter] = Field(
        {}, description="Options of the generated script to change, e.g. {\"learning_rate\": 0.05}"
    )
    script: str | None = Field(None, description="Your edited copy of the generated script; the generated script if empty")
    code_folder: str = Field("generated_code", description="Where the generated script is saved, a folder per AutoML job")
    environment: str = Field(
        "AzureML-sklearn-1.5@latest",
        description=f"Curated or registered environment, a conda YAML file to build one from, or '{GENERATED}': the conda spec AutoML wrote with the script",
    )
    compute: str = Field("cpu-cluster", description="Compute cluster (created if missing); 'local' for none")
    max_instances: int = Field(2, ge=1, description="Nodes of a new cluster (localml: jobs at once)")
    experiment_name: str = Field("diabetes-refine", description="MLflow / Azure ML experiment")
    model_name: str = Field("diabetes-refined", description="Name the refined model is registered as")
    registration_rule: RegistrationRule = Field(
        "at_least_as_good", description="Register when the refined model is at_least_as_good as / better than the AutoML model, or always"
    )
    tolerance: float = Field(0.0, ge=0, description="Primary-metric slack of the rule (at_least_as_good: may lose this much)")
    timeout_minutes: float = Field(30, gt=0, description="The job is canceled if it runs longer")
    refresh: bool = Field(False, description="Train again even if an identical job already ran")

    @model_validator(mode="after")
    def _check(self) -> "RefineParameters":
        if self.baseline.startswith("azureml:"):
            check_model_reference(self.baseline)
        if self.script is not None:
            if not Path(self.script).is_file():
                raise ValueError(f"Script '{self.script}' not found (looked in {Path.cwd()}). Give your edited copy of the generated script.")
            check_arguments(self.script, self.hyperparameters)  # a syntax error or an unknown option fails here
        if is_conda_file(self.environment):
            check_conda_file(self.environment)
        return self


class RefineResult(BaseModel):
    automl_job: str
    job_name: str
    script: str
    changes: dict[str, Hyperparameter]
    primary_metric: str
    automl_score: float = Field(description="The AutoML model's primary metric on the held-out rows")
    refined_score: float = Field(description="The refined model's primary metric on the same rows")
    registered: bool
    decision: str
    model: str | None = Field(description="azureml:NAME:VERSION when registered")
    studio_url: str | None = None
    reused: bool


class MetricNotLoggedError(RuntimeError):
    """The refined job completed without logging the metric it is judged on."""


@flow(name="refine")
def refine(params: RefineParameters = RefineParameters.defaults()) -> RefineResult:
    """Change the training script AutoML generated, retrain, and keep the result only if it holds up."""
    params = params.validated()
    workspace = params.workspace
    automl_job = automl_job_of(workspace, params.baseline)
    code = generated_training_code(workspace, automl_job, params.code_folder, keep_edited=params.script is not None)
    # the generated script's options are known only now; your edited copy's were checked with the parameters
    check_arguments(params.script or code.script, params.hyperparameters)
    training = _training_parameters(params, code, _environment(params, code))
    _, job = start_job(training)
    result = wait_for_job(workspace, job.name, timeout_seconds=params.timeout_minutes * 60)
    _check_primary_metric_logged(workspace, job.name, code.primary_metric, result.studio_url)
    comparison = compare_models(
        workspace,
        baseline=RunArtifact(run_id=code.best_run, path="outputs/mlflow-model"),
        candidate=RunArtifact(run_id=job.name, path=MODEL_OUTPUT),
        test_data=RunArtifact(run_id=automl_job, path="outputs/test_data"),
        target_column=code.target_column,
        task_type=code.task,
        primary_metric=code.primary_metric,
    )
    register, decision = registration_decision(comparison, params.registration_rule, params.tolerance)
    model = _register_refined_model(params, code, automl_job, job.name, comparison) if register else None
    publish_refine_report(
        comparison, automl_job, job.name, {k: str(v) for k, v in params.hyperparameters.items()}, decision, model,
        {f"AutoML {automl_job}": code.studio_url, f"refined {job.name}": result.studio_url},
    )
    return RefineResult(
        automl_job=automl_job,
        job_name=job.name,
        script=training.script,
        changes=params.hyperparameters,
        primary_metric=code.primary_metric,
        automl_score=comparison.baseline_score,
        refined_score=comparison.candidate_score,
        registered=register,
        decision=decision,
        model=model,
        studio_url=result.studio_url,
        reused=job.reused,
    )


def _environment(params: RefineParameters, code: GeneratedCode) -> str:
    """The environment the script runs in; a conda file (AutoML's or the user's) is registered as one first."""
    environment = code.environment_file if params.environment == GENERATED else params.environment
    if is_conda_file(environment):
        environment = register_environment(params.workspace, EnvironmentSpec(name=f"{params.model_name}-env", conda_file=environment))
    return environment


def _training_parameters(params: RefineParameters, code: GeneratedCode, environment: str) -> TrainParameters:
    """The generated (or edited) script as a command job on the data AutoML trained, validated and tested on."""
    return TrainParameters(
        workspace=params.workspace,
        script=params.script or code.script,
        data=code.data_inputs["training_data"],
        data_type="mltable",
        more_data={k: InputSpec(type="mltable", path=v) for k, v in code.data_inputs.items() if k != "training_data"},
        hyperparameters=params.hyperparameters,
        environment=environment,
        compute=params.compute,
        max_instances=params.max_instances,
        experiment_name=params.experiment_name,
        model_name=params.model_name,
        model_output=MODEL_OUTPUT,
        timeout_minutes=params.timeout_minutes,
        refresh=params.refresh,
    )


def _check_primary_metric_logged(workspace: str, job_name: str, primary_metric: str, studio_url: str | None) -> None:
    """An edited script may drop the metric both models are compared on: say so before scoring anything."""
    metrics = job_metrics(workspace, job_name)
    if primary_metric not in metrics:
        raise MetricNotLoggedError(
            f"Job {job_name} completed but never logged {primary_metric}, the metric it is compared on "
            f"(it logged: {', '.join(sorted(metrics)) or 'nothing'}). Log it with mlflow.log_metric('{primary_metric}', ...) "
            f"as the generated script does. The job's log: {studio_url} (or ml_client.jobs.download('{job_name}'))."
        )


def _register_refined_model(params: RefineParameters, code: GeneratedCode, automl_job: str, job_name: str,
                            comparison: ModelComparison) -> str:
    """Registers the job's model, tagged with the AutoML run it was compared to and both scores."""
    metric = code.primary_metric
    return register_model(params.workspace, ModelSpec.of_job_artifacts(
        params.model_name, job_name, MODEL_OUTPUT,
        tags={
            "job_name": job_name,
            "compared_to": code.best_run,
            "automl_job": automl_job,
            "baseline": params.baseline,
            f"held_out_{metric}": f"{comparison.candidate_score:.4f}",
            f"automl_held_out_{metric}": f"{comparison.baseline_score:.4f}",
            "registration_rule": params.registration_rule,
            "changes": json.dumps(params.hyperparameters, sort_keys=True),
            "script": "edited" if params.script else "generated",
        },
    )).reference
