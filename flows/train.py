"""The ``train`` flow: a training script runs as a command job, tracked in MLflow, and its model is registered.

    register data -> ensure compute -> submit command job -> wait -> metrics -> register model -> summary
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from flows.parameters import FlowParameters
from tasks.compute import ComputeSpec, cluster_name, ensure_compute
from tasks.data import DataRef, DataSpec, check_data_path, register_data
from tasks.jobs import (
    CommandJobSpec,
    InputSpec,
    SubmittedJob,
    job_metrics,
    submit_job,
    wait_for_job,
)
from tasks.models import ModelSpec, register_model
from tasks.reports import publish_training_summary
from tasks.scripts import check_arguments

Hyperparameter = StrictBool | StrictInt | StrictFloat | str


class TrainParameters(FlowParameters):
    """Parameters of the ``train`` flow; the defaults train the DP-100 diabetes classifier on the bundled sample."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    script: str = Field("examples/train_diabetes/train.py", description="Training script; its folder is uploaded as the job's code")
    data: str = Field("examples/data/diabetes/diabetes.csv", description="Local file/folder, or azureml:NAME:VERSION")
    data_name: str = Field("diabetes-csv", description="Name of the data asset the local data is registered as")
    data_type: Literal["uri_file", "uri_folder", "mltable"] = Field("uri_file", description="Data asset type")
    data_argument: str = Field("training_data", description="The script's argument that receives the data path")
    more_data: dict[str, InputSpec] = Field(
        {}, description="Further data the script takes: argument -> {type, path} (path: local or azureml:NAME:VERSION)"
    )
    hyperparameters: dict[str, Hyperparameter] = Field(
        {"learning_rate": 0.1, "max_iter": 100},
        description="Passed to the script as --name value (checked against its argparse options)",
    )
    command: str | None = Field(None, description="Custom command; by default: python SCRIPT --ARG ${{inputs.ARG}} ...")
    environment: str = Field("AzureML-sklearn-1.5@latest", description="Environment the job runs in")
    compute: str = Field("cpu-cluster", description="Compute cluster (created if missing); 'local' for none")
    max_instances: int = Field(2, ge=1, description="Nodes of a new cluster (localml: jobs at once)")
    experiment_name: str = Field("diabetes-training", description="MLflow / Azure ML experiment")
    model_name: str = Field("diabetes-classifier", description="Name the trained model is registered as")
    model_output: str = Field("outputs/model", description="Folder (under the job's working dir) where the script saves its MLflow model")
    timeout_minutes: float = Field(30, gt=0, description="The job is canceled if it runs longer")
    refresh: bool = Field(False, description="Train again even if an identical job already ran")

    @model_validator(mode="after")
    def _check_inputs(self) -> "TrainParameters":
        script = Path(self.script)
        if not script.is_file():
            raise ValueError(f"Training script '{self.script}' not found (looked in {Path.cwd()}). Give the path of a .py file.")
        check_data_path(self.data)
        if self.command is None:
            check_arguments(script, {self.data_argument: "path", **dict.fromkeys(self.more_data, "path"), **self.script_inputs()})
        self.job_spec("azureml:validation:1")  # an ${{inputs.x}} the job lacks fails here, before any job
        return self

    def script_inputs(self) -> dict[str, Hyperparameter]:
        """The hyperparameters the script is given, each as ``--name value``."""
        return dict(self.hyperparameters)

    def job_spec(self, data_reference: str) -> CommandJobSpec:
        script = Path(self.script)
        inputs = {self.data_argument: InputSpec(type=self.data_type, path=data_reference), **self.more_data, **self.script_inputs()}
        command = self.command or f"python {script.name} " + " ".join(f"--{k} ${{{{inputs.{k}}}}}" for k in inputs)
        return CommandJobSpec(
            command=command,
            code=str(script.parent),
            environment=self.environment,
            inputs=inputs,
            compute=cluster_name(self.compute),
            experiment_name=self.experiment_name,
            display_name=script.stem,
        )


class TrainResult(BaseModel):
    job_name: str
    status: str
    metrics: dict[str, float]
    model: str = Field(description="Registered model reference, azureml:NAME:VERSION")
    data: str = Field(description="Data asset reference the job trained on")
    studio_url: str | None = None
    reused: bool = Field(description="True when an identical earlier job was re-attached (nothing trained)")


def start_job(params: TrainParameters) -> tuple[DataRef, SubmittedJob]:
    """Register the data, make sure the compute exists, and submit the job the parameters describe."""
    data = register_data(params.workspace, DataSpec(name=params.data_name, path=params.data, type=params.data_type))
    if cluster_name(params.compute):
        ensure_compute(params.workspace, ComputeSpec(name=params.compute, max_instances=params.max_instances))
    return data, submit_job(params.workspace, params.job_spec(data.reference), refresh=params.refresh)


@flow(name="train")
def train(params: TrainParameters = TrainParameters.defaults()) -> TrainResult:
    """Train a model with a script of your own as an Azure ML command job, and register it."""
    params = params.validated()
    workspace = params.workspace
    data, job = start_job(params)
    result = wait_for_job(workspace, job.name, timeout_seconds=params.timeout_minutes * 60)
    metrics = job_metrics(workspace, job.name)
    model = register_model(
        workspace,
        ModelSpec.of_job_artifacts(
            params.model_name, job.name, params.model_output,
            tags={"job_name": job.name, "data": data.reference, **{k: f"{v:.4f}" for k, v in metrics.items()}},
        ),
    )
    publish_training_summary(job.name, result.status, metrics, model.reference, data.reference, result.studio_url, job.reused)
    return TrainResult(
        job_name=job.name,
        status=result.status,
        metrics=metrics,
        model=model.reference,
        data=data.reference,
        studio_url=result.studio_url,
        reused=job.reused,
    )
