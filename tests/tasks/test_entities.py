"""The azure-ai-ml entities our tasks build pass the SDK's own validation (Azure itself is not reachable here)."""

import pytest
from azure.ai.ml import load_job

from tasks.compute import ComputeSpec
from tasks.data import DataSpec
from tasks.jobs import CommandJobSpec, InputSpec, OutputSpec
from tasks.models import ModelSpec
from tests.conftest import REPO

SAMPLE = REPO / "examples" / "data" / "diabetes"


def command_spec(**overrides) -> CommandJobSpec:
    values = dict(
        code=str(REPO / "examples" / "train_diabetes"),
        command="python train.py --training_data ${{inputs.data}} --max_iter ${{inputs.max_iter}} --model_dir ${{outputs.model}}",
        inputs={"data": InputSpec(type="uri_file", path=str(SAMPLE / "diabetes.csv")), "max_iter": 50},
        outputs={"model": OutputSpec(type="mlflow_model")},
        compute="cpu-cluster",
        experiment_name="diabetes-training",
    )
    return CommandJobSpec(**{**values, **overrides})


def test_command_job_passes_sdk_validation_and_serializes(tmp_path):
    job = command_spec().to_job(name="diabetes-training-0123456789ab")
    job._validate()  # raises ValidationException on an invalid job
    rest = job._to_rest_object()
    assert rest.properties.command.startswith("python train.py")
    assert rest.properties.compute_id.endswith("cpu-cluster")
    # and the YAML the SDK writes loads back as the same job
    job.dump(tmp_path / "job.yml")
    reloaded = load_job(tmp_path / "job.yml")
    assert reloaded.command == job.command and set(reloaded.inputs) == {"data", "max_iter"}


def test_command_job_on_registered_data_serializes():
    job = command_spec(inputs={"data": InputSpec(type="mltable", path="azureml:diabetes:3"), "max_iter": 50}).to_job()
    job._validate()  # raises ValidationException on an invalid job
    assert job._to_rest_object().properties.inputs["data"].uri == "azureml:diabetes:3"


def test_command_spec_rejects_a_placeholder_without_input():
    with pytest.raises(ValueError, match="no input named 'nope'"):
        command_spec(command="python train.py --x ${{inputs.nope}}")


def test_data_model_and_compute_entities_serialize():
    data = DataSpec(name="diabetes", path=str(SAMPLE), type="mltable").to_data("abc123")
    assert data._to_rest_object().properties.data_type == "mltable"
    model = ModelSpec(name="diabetes-classifier", path="azureml://jobs/j1/outputs/artifacts/paths/outputs/model").to_model()
    assert model._to_rest_object().properties.model_type == "mlflow_model"
    compute = ComputeSpec(name="cpu-cluster", max_instances=3).to_compute()
    assert compute._to_rest_object().properties.properties.scale_settings.max_node_count == 3


def test_sdk_validation_catches_a_job_without_environment():
    from azure.ai.ml.exceptions import ValidationException

    job = command_spec().to_job()
    job.environment = None
    with pytest.raises(ValidationException, match="environment is required"):
        job._validate()


def test_automl_job_passes_sdk_validation_and_serializes():
    from tasks.automl import AutoMLJobSpec

    spec = AutoMLJobSpec(
        training_data=InputSpec(type="mltable", path="azureml:diabetes:1"),
        target_column="Diabetic",
        primary_metric="auc_weighted",  # any spelling of Azure's name is accepted and made canonical
        test_data_size=0.3,
        timeout_minutes=2,
        max_trials=10,
        allowed_algorithms=["light_gbm", "XGBoostClassifier"],
        compute="cpu-cluster",
    )
    assert spec.primary_metric == "AUC_weighted" and spec.allowed_algorithms == ["LightGBM", "XGBoostClassifier"]
    job = spec.to_job(name="diabetes-automl-0123456789ab")
    rest = job._to_rest_object()
    assert rest.properties.task_details.primary_metric == "AUCWeighted"
    assert rest.properties.task_details.limit_settings.max_trials == 10
    assert rest.properties.task_details.target_column_name == "Diabetic"


def test_automl_spec_rejects_what_azure_would():
    from tasks.automl import AutoMLJobSpec

    data = InputSpec(type="mltable", path="azureml:diabetes:1")
    with pytest.raises(ValueError, match="must be MLTable data"):
        AutoMLJobSpec(training_data=InputSpec(type="uri_file", path="azureml:diabetes-csv:1"), target_column="Diabetic")
    with pytest.raises(ValueError, match="Unknown primary metric for regression 'accuracy'"):
        AutoMLJobSpec(task="regression", training_data=data, target_column="BMI", primary_metric="accuracy")
    with pytest.raises(ValueError, match="Unknown classification algorithm 'ElasticNet'"):
        AutoMLJobSpec(training_data=data, target_column="Diabetic", blocked_algorithms=["ElasticNet"])


def test_a_batch_deployment_and_its_endpoint_serialize_as_azure_takes_them():
    from tasks.batch import BatchDeploymentSpec, BatchEndpointSpec, default_deployment_of

    spec = BatchDeploymentSpec(name="classifier", endpoint_name="diabetes-batch", model="azureml:diabetes-baseline:3",
                               compute="cpu-cluster", instance_count=2, max_concurrency_per_instance=3, mini_batch_size=5,
                               max_retries=1, timeout=120, error_threshold=10, output_file_name="scores.csv")
    rest = spec.to_deployment()._to_rest_object(location="westeurope")
    settings = rest.properties
    assert (settings.model.asset_id, settings.compute, settings.resources.instance_count) == ("azureml:diabetes-baseline:3", "cpu-cluster", 2)
    assert (settings.mini_batch_size, settings.max_concurrency_per_instance, settings.error_threshold) == (5, 3, 10)
    assert (settings.retry_settings.max_retries, settings.retry_settings.timeout.total_seconds()) == (1, 120)
    assert (str(settings.output_action), settings.output_file_name) == ("BatchOutputAction.APPEND_ROW", "scores.csv")
    # the fingerprint follows the model and the settings, and only them
    assert rest.tags["amlflows.deployment"] == spec.digest() == spec.model_copy(update={"tags": {"team": "a"}}).digest()
    assert spec.model_copy(update={"mini_batch_size": 6}).digest() != spec.digest()
    assert spec.model_copy(update={"model": "azureml:diabetes-baseline:4"}).digest() != spec.digest()

    endpoint = BatchEndpointSpec(name="diabetes-batch").to_endpoint()
    endpoint.defaults = {"deployment_name": "classifier"}
    assert endpoint._to_rest_batch_endpoint(location="westeurope").properties.defaults.deployment_name == "classifier"
    assert default_deployment_of(endpoint) == "classifier"

