"""Batch endpoints and deployments on localml: Azure's code, unchanged but for the client line, scores folders of files.

Real parts only: each invoke runs localml's batch driver as a detached job, with worker processes that load a real
MLflow model or a real scoring script.
"""

from __future__ import annotations

import shutil
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest
from azure.ai.ml import Input
from azure.ai.ml.constants import AssetTypes, BatchDeploymentOutputAction
from azure.ai.ml.entities import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    BatchRetrySettings,
    CodeConfiguration,
    Data,
    Model,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
)
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import ResourceNotFoundError

REPO = Path(__file__).resolve().parents[2]
PATIENTS = REPO / "examples" / "data" / "patient-data"
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness", "SerumInsulin", "BMI",
            "DiabetesPedigree", "Age"]


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory) -> Path:
    """A tiny scikit-learn diabetes classifier saved as an MLflow model with its inferred signature."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    training = pd.read_csv(DIABETES_CSV, nrows=1000)
    features, label = training.drop(columns=["PatientID", "Diabetic"]), training["Diabetic"]
    classifier = LogisticRegression(max_iter=500).fit(features, label)
    folder = tmp_path_factory.mktemp("batch-model") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hints on integer columns and pickles: this model is ours
        mlflow.sklearn.save_model(classifier, folder, serialization_format="cloudpickle", pip_requirements=["scikit-learn"],
                                  signature=infer_signature(features, classifier.predict(features)))
    return folder


@pytest.fixture
def model(ml_client, mlflow_model_dir):
    return ml_client.models.create_or_update(Model(path=str(mlflow_model_dir), type=AssetTypes.MLFLOW_MODEL, name="diabetes-mlflow"))


@pytest.fixture
def cluster(ml_client):
    return ml_client.begin_create_or_update(AmlCompute(name="aml-cluster", max_instances=2)).result()


@pytest.fixture
def endpoint(ml_client):
    endpoint = BatchEndpoint(name="diabetes-batch", description="A batch endpoint for classifying diabetes in patients")
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    return endpoint


def mlflow_deployment(endpoint, model, **settings) -> ModelBatchDeployment:
    return ModelBatchDeployment(name="classifier", endpoint_name=endpoint.name, model=model, compute="aml-cluster",
                                settings=ModelBatchDeploymentSettings(**{"mini_batch_size": 2, **settings}))


# -- the operation groups ---------------------------------------------------------------------------------------


def test_an_endpoint_and_its_deployment_are_created_read_listed_and_deleted(ml_client, model, cluster, endpoint):
    deployment = mlflow_deployment(endpoint, model)
    created = ml_client.batch_deployments.begin_create_or_update(deployment).result()
    assert created.provisioning_state == "Succeeded"
    assert created.model == "azureml:diabetes-mlflow:1"
    endpoint.defaults = {"deployment_name": deployment.name}
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()

    got = ml_client.batch_endpoints.get(endpoint.name)
    assert (got.name, got.description, got.defaults.deployment_name) == (endpoint.name, endpoint.description, "classifier")
    assert [e.name for e in ml_client.batch_endpoints.list()] == ["diabetes-batch"]
    assert [d.name for d in ml_client.batch_deployments.list(endpoint_name=endpoint.name)] == ["classifier"]

    ml_client.batch_endpoints.begin_delete(endpoint.name).result()
    with pytest.raises(ResourceNotFoundError, match="diabetes-batch"):
        ml_client.batch_endpoints.get(endpoint.name)
    with pytest.raises(ResourceNotFoundError, match="diabetes-batch"):
        ml_client.batch_deployments.get("classifier", endpoint_name=endpoint.name)


def test_a_deployment_gets_azures_defaults_for_what_it_leaves_unset(ml_client, model, cluster, endpoint):
    deployment = ModelBatchDeployment(name="plain", endpoint_name=endpoint.name, model=model, compute="aml-cluster")
    ml_client.batch_deployments.begin_create_or_update(deployment).result()
    settings = ml_client.batch_deployments.get("plain", endpoint.name).settings
    assert (settings.mini_batch_size, settings.instance_count, settings.max_concurrency_per_instance) == (10, 1, 1)
    assert (settings.error_threshold, settings.output_action, settings.output_file_name) == (-1, "append_row", "predictions.csv")
    assert (settings.retry_settings.max_retries, settings.retry_settings.timeout, settings.logging_level) == (3, 30, "info")


def test_the_legacy_flat_batch_deployment_is_taken_too(ml_client, model, cluster, endpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's deprecation notice for BatchDeployment
        deployment = BatchDeployment(name="legacy", endpoint_name=endpoint.name, model=model, compute="aml-cluster",
                                     instance_count=2, max_concurrency_per_instance=3, mini_batch_size=5,
                                     retry_settings=BatchRetrySettings(max_retries=1, timeout=60))
    ml_client.begin_create_or_update(deployment).result()  # MLClient.begin_create_or_update dispatches it too
    settings = ml_client.batch_deployments.get("legacy", endpoint.name).settings
    assert (settings.instance_count, settings.max_concurrency_per_instance, settings.mini_batch_size) == (2, 3, 5)
    assert (settings.retry_settings.max_retries, settings.retry_settings.timeout) == (1, 60)


def test_a_mini_batch_size_of_zero_is_refused(ml_client, model, cluster, endpoint):
    with pytest.raises(ValidationException, match="mini_batch_size is 0"):
        ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model, mini_batch_size=0))


def test_summary_only_with_an_output_file_name_is_refused(ml_client, model, cluster, endpoint):
    deployment = mlflow_deployment(endpoint, model, output_action=BatchDeploymentOutputAction.SUMMARY_ONLY,
                                   output_file_name="predictions.csv")
    with pytest.raises(ValidationException, match="summary_only.*output_file_name"):
        ml_client.batch_deployments.begin_create_or_update(deployment)


def test_a_model_that_is_not_mlflow_needs_a_scoring_script(ml_client, tmp_path, cluster, endpoint):
    (tmp_path / "model.pkl").write_bytes(b"not a model")
    custom = ml_client.models.create_or_update(Model(path=str(tmp_path / "model.pkl"), name="custom", type="custom_model"))
    deployment = ModelBatchDeployment(name="custom", endpoint_name=endpoint.name, model=custom, compute="aml-cluster")
    with pytest.raises(ValidationException, match="needs a batch scoring script"):
        ml_client.batch_deployments.begin_create_or_update(deployment)


def test_a_deployment_of_an_unknown_endpoint_or_compute_is_refused(ml_client, model, cluster, endpoint):
    with pytest.raises(ResourceNotFoundError, match="nowhere"):
        ml_client.batch_deployments.begin_create_or_update(
            ModelBatchDeployment(name="lost", endpoint_name="nowhere", model=model, compute="aml-cluster"))
    with pytest.raises(ResourceNotFoundError, match="no-such-cluster"):
        ml_client.batch_deployments.begin_create_or_update(
            ModelBatchDeployment(name="lost", endpoint_name=endpoint.name, model=model, compute="no-such-cluster"))


def test_the_default_deployment_must_exist_and_cannot_be_deleted(ml_client, model, cluster, endpoint):
    endpoint.defaults = {"deployment_name": "classifier"}
    with pytest.raises(ValidationException, match="has no deployments"):
        ml_client.batch_endpoints.begin_create_or_update(endpoint)
    ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model)).result()
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    with pytest.raises(ValidationException, match="default deployment"):
        ml_client.batch_deployments.begin_delete(name="classifier", endpoint_name=endpoint.name)
