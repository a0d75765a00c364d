"""The ``batch_score`` flow on localml: the diabetes champion scores the sample's four patient files (400 rows) on a
batch endpoint, the predictions are those the model itself gives, registered as a data version and reported; a
second run re-uses the endpoint and its deployment and registers a new version; a changed setting updates the
deployment; bad input is refused by the parameter model before anything is created, at the command line too.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from prefect.artifacts import Artifact
from pydantic import ValidationError

from amlflows.cli import main
from flows.batch_score import BatchScoreParameters, batch_score
from tasks.batch import BatchScoringFailed
from tests.flows.test_deploy import DIABETES_CSV, FEATURES
from tests.flows.test_deploy import model_folder as float_model_folder  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[2]
PATIENTS = REPO / "examples" / "data" / "patient-data"
ENDPOINT = "diabetes-batch"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A small LightGBM MLflow model of the diabetes sample whose signature has the CSV's own column types (whole
    numbers as long), as a model trained on the CSV has."""
    import lightgbm
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    data = pd.read_csv(DIABETES_CSV, nrows=2000)
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, verbose=-1).fit(data[FEATURES], data["Diabetic"])
    folder = tmp_path_factory.mktemp("mlflow") / "model"
    with warnings.catch_warnings():  # MLflow's hint that whole-number columns cannot hold missing values: these have none
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(data[FEATURES], model.predict(data[FEATURES]))
    mlflow.lightgbm.save_model(model, str(folder), signature=signature, pip_requirements=["lightgbm"])
    return folder


def register_champion(ml_client, folder: Path, version: str = "1") -> None:
    from azure.ai.ml.entities import Model

    ml_client.models.create_or_update(Model(name="diabetes-baseline", version=version, path=str(folder),
                                            type="mlflow_model", tags={"champion": "true"}))


@pytest.fixture
def champion(ml_client, model_folder):
    """A workspace whose ``diabetes-baseline`` version 1 is the champion."""
    register_champion(ml_client, model_folder)
    return ml_client


def params(tmp_path: Path, **changes) -> BatchScoreParameters:
    return BatchScoreParameters(**{"data": str(PATIENTS), "output_folder": str(tmp_path / "batch_predictions"), **changes})


def expected_balance(model_folder: Path) -> dict[str, int]:
    """What the model predicts for the 400 patients, read in this process."""
    import mlflow.pyfunc

    rows = pd.concat([pd.read_csv(f) for f in sorted(PATIENTS.glob("*.csv"))])[FEATURES]
    predictions = pd.Series(mlflow.pyfunc.load_model(str(model_folder)).predict(rows)).astype(int).astype(str)
    return dict(sorted(predictions.value_counts().items()))


def test_the_champion_scores_the_four_patient_files_and_the_predictions_are_registered_and_reported(
        champion, model_folder, tmp_path):
    state = batch_score(params(tmp_path), return_state=True)
    result = state.result()

    assert (result.status, result.model, result.endpoint, result.deployment) == (
        "Completed", "azureml:diabetes-baseline:1", ENDPOINT, "classifier")
    assert result.deployment_outcome == "created" and result.data == "azureml:patient-data:1"
    assert (result.rows, result.files, result.failed_mini_batches) == (400, 4, 0)
    assert result.class_balance == expected_balance(model_folder)

    # the endpoint sends invocations without a deployment name to the deployment
    endpoint = champion.batch_endpoints.get(ENDPOINT)
    assert endpoint.defaults.deployment_name == "classifier"
    # the predictions, as a table a drift check can read, tagged with what made them
    name, version = result.predictions.removeprefix("azureml:").split(":")
    asset = champion.data.get(name, version=version)
    assert (name, version, str(asset.type)) == ("diabetes-predictions", "1", "mltable")
    assert asset.tags["batch.job"] == result.job_name and asset.tags["model"] == "azureml:diabetes-baseline:1"
    table = champion.data.to_dataframe(result.predictions)
    assert list(table.columns) == ["file", "row", "prediction"] and len(table) == 400
    assert sorted(table["file"].unique()) == [f"patient-data-{i}.csv" for i in range(4)]
    assert Path(result.predictions_path).is_file()

    # what a person sees: the summary, the class balance chart and the first rows
    artifacts = {key: Artifact.get(key) for key in ("batch-summary", "batch-class-balance", "batch-first-rows")}
    assert all(artifacts.values()), artifacts
    summary = artifacts["batch-summary"].data
    assert "**Rows scored:** 400 from 4 file(s)" in summary and "**Failed mini-batches:** 0" in summary
    assert result.predictions in summary and f"{ENDPOINT}/classifier" in summary


@pytest.mark.slow  # three runs of the flow: about a minute
def test_a_second_run_re_uses_endpoint_and_deployment_and_a_changed_setting_updates_the_deployment(champion, tmp_path):
    first = batch_score(params(tmp_path))
    second = batch_score(params(tmp_path))
    assert (first.deployment_outcome, second.deployment_outcome) == ("created", "unchanged")
    assert second.job_name != first.job_name, "each run scores afresh"
    assert (first.predictions, second.predictions) == ("azureml:diabetes-predictions:1", "azureml:diabetes-predictions:2")
    assert second.class_balance == first.class_balance and second.rows == 400

    third = batch_score(params(tmp_path, mini_batch_size=4))
    assert third.deployment_outcome == "updated" and third.rows == 400 and third.files == 4
    assert champion.batch_deployments.get(name="classifier", endpoint_name=ENDPOINT).settings.mini_batch_size == 4
    assert [e.name for e in champion.batch_endpoints.list()] == [ENDPOINT]
    assert [d.name for d in champion.batch_deployments.list(endpoint_name=ENDPOINT)] == ["classifier"]


@pytest.mark.slow
def test_a_model_the_files_do_not_fit_fails_the_run_with_its_failed_mini_batches_and_registers_nothing(
        ml_client, float_model_folder, tmp_path):  # noqa: F811 (the fixture imported above)
    register_champion(ml_client, float_model_folder)  # its signature wants doubles; the files hold whole numbers
    with pytest.raises(BatchScoringFailed, match=r"scored no rows of azureml:patient-data:1: 2 mini-batch\(es\) failed"):
        batch_score(params(tmp_path))
    assert list(ml_client.data.list(name="diabetes-predictions")) == []


@pytest.mark.slow
def test_replies_lost_after_the_invoke_and_the_registrations_took_effect_leave_one_job_and_one_version(
        champion, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALML_FAULTS", "batch_deployments.begin_create_or_update@after=503x1,"
                                         "batch_endpoints.invoke@after=503x1,data.create_or_update@after=503x2")
    result = batch_score(params(tmp_path))
    # the retry of the deployment found it serving this spec: it says so, and deploys nothing again
    assert (result.rows, result.predictions, result.deployment_outcome) == (400, "azureml:diabetes-predictions:1", "unchanged")
    assert [job.name for job in champion.batch_endpoints.list_jobs(ENDPOINT)] == [result.job_name]
    assert [d.version for d in champion.data.list(name="patient-data")] == ["1"]
    assert [d.version for d in champion.data.list(name="diabetes-predictions")] == ["1"]


def test_an_unknown_model_fails_the_run_before_any_endpoint_is_created(ml_client, tmp_path):
    with pytest.raises(ValueError, match="diabetes-baseline has no version tagged champion"):
        batch_score(params(tmp_path))
    assert list(ml_client.batch_endpoints.list()) == []


@pytest.mark.parametrize("change, message", [
    ({"mini_batch_size": 0}, "mini_batch_size\n  Input should be greater than or equal to 1"),
    ({"instance_count": 0}, "greater than or equal to 1"),
    ({"error_threshold": -2}, "greater than or equal to -1"),
    ({"model": "diabetes-baseline"}, "'diabetes-baseline' is not a model reference: use azureml:<name>:<version>"),
    ({"model": "azureml:diabetes-baseline"}, "is not a model reference"),
    ({"data": "examples/data/no-such-folder"}, "Data path 'examples/data/no-such-folder' does not exist"),
    ({"data": "azureml:patient-data"}, "'azureml:patient-data' is not a data asset reference"),
    ({"endpoint_name": "1-batch"}, "Batch endpoint name '1-batch' is not valid"),
    ({"deployment_name": "my deployment"}, "Deployment name 'my deployment' is not valid"),
    ({"output_file_name": "out/predictions.csv"}, "is not a file name: give a plain name such as predictions.csv"),
], ids=["mini-batch-0", "instances-0", "threshold", "model-form", "model-no-version", "no-folder", "data-form",
        "endpoint-name", "deployment-name", "output-path"])
def test_bad_parameters_are_refused_by_the_parameter_model_in_under_a_second(change, message, monkeypatch):
    monkeypatch.chdir(REPO)
    started = time.perf_counter()
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BatchScoreParameters(**change)
    assert time.perf_counter() - started < 1


def test_a_folder_with_no_files_is_refused_saying_what_to_give(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValidationError, match="has no files to score. Put the files"):
        BatchScoreParameters(data=str(tmp_path / "empty"))


def test_the_command_line_refuses_a_mini_batch_of_no_files_before_the_flow_starts(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["run", "batch_score", "--mini-batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "invalid parameters for 'batch_score'" in err
    assert "  - mini_batch_size: Input should be greater than or equal to 1" in err
    assert "Traceback" not in err and "Beginning flow run" not in err
