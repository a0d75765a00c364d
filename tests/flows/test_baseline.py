"""The baseline flow (AutoML) end to end on a real Prefect server and a real localml workspace."""

import mlflow.pyfunc
import pandas as pd
import pytest
from prefect.artifacts import Artifact
from pydantic import ValidationError

from flows.baseline import BaselineParameters, baseline
from tests.conftest import REPO
from tests.flows.test_train import task_runs

DIABETES = REPO / "examples" / "data" / "diabetes"
PATIENTS = REPO / "tests" / "data" / "patient-data-0.csv"
MLTABLE = "paths:\n  - file: ./data.csv\ntransformations:\n  - read_delimited:\n      delimiter: ','\n"


def quick_params(**overrides) -> BaselineParameters:
    values = dict(data=str(DIABETES), timeout_minutes=1, max_trials=3, allowed_algorithms=["LightGBM"], compute="local")
    return BaselineParameters(**{**values, **overrides})


def test_baseline_registers_the_best_model_reports_it_and_reruns_from_cache(baseline_workspace):
    from tasks.workspace import get_client

    ml_client = get_client("local")
    result = baseline_workspace.result
    assert result.algorithm == "LightGBM" and result.primary_metric == "AUC_weighted"
    assert result.score > 0.9 and result.metrics["test_AUC_weighted"] > 0.9
    assert result.best_run.startswith(f"{result.job_name}_")

    model = ml_client.models.get("diabetes-baseline", version="1")
    assert model.tags["algorithm"] == "LightGBM" and model.tags["data"] == result.data == "azureml:diabetes:1"
    loaded = mlflow.pyfunc.load_model(str(ml_client._workspace.resolve_uri(model.path)))
    predictions = loaded.predict(pd.read_csv(PATIENTS))  # raw rows without PatientID: featurization is in the model
    assert len(predictions) == 100 and set(predictions) <= {0, 1}

    assert result.job_name in Artifact.get("baseline-summary").data
    leaderboard = Artifact.get("baseline-leaderboard").data
    assert "LightGBM" in leaderboard and result.best_run in leaderboard
    assert "PatientID" in Artifact.get("baseline-guardrails").data
    assert Artifact.get("baseline-feature-importance").data.startswith("data:image/png;base64,")

    second = baseline(quick_params(), return_state=True)
    assert second.result().reused and second.result().job_name == result.job_name
    assert task_runs(second)["wait_for_job"].state.name == "Cached"
    assert [job.name for job in ml_client.jobs.list() if job.type == "automl"] == [result.job_name]


def write_table(folder, frame: pd.DataFrame) -> str:
    folder.mkdir(parents=True)
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "MLTable").write_text(MLTABLE)
    return str(folder)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"target_column": "Outcome"}, "Target column 'Outcome' is not in the training data"),
        ({"data": str(DIABETES / "diabetes.csv")}, "AutoML needs MLTable data"),
        ({"data": "missing/folder"}, "Data path 'missing/folder' not found"),
        ({"primary_metric": "f1"}, "Unknown primary metric for classification 'f1'"),
        ({"allowed_algorithms": ["DeepForest"]}, "Unknown classification algorithm 'DeepForest'"),
        ({"task": "regression", "primary_metric": "AUC_weighted"}, "Unknown primary metric for regression"),
    ],
)
def test_bad_parameters_are_rejected_before_anything_runs(overrides, message):
    with pytest.raises(ValidationError, match=message):
        quick_params(**overrides)


def test_a_single_class_or_an_empty_table_is_rejected(tmp_path):
    rows = pd.read_csv(DIABETES / "diabetes.csv").head(50)
    single = write_table(tmp_path / "single", rows.assign(Diabetic=1))
    with pytest.raises(ValidationError, match="single class"):
        quick_params(data=single)
    empty = write_table(tmp_path / "empty", rows.head(0))
    with pytest.raises(ValidationError, match="no rows"):
        quick_params(data=empty)
