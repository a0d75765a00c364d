"""localml AutoML jobs: real jobs (detached processes running FLAML) on a real MLflow store, and the
pure functions behind them (settings, featurization, guardrails, metrics) on small DataFrames.

The three real jobs are submitted together by one module-scoped fixture, so they run side by side
while the first job test waits; each has a tiny budget (LightGBM only, a few trials).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from azure.ai.ml import Input, automl, command
from azure.ai.ml.automl import ClassificationJob, RegressionJob
from azure.ai.ml.entities import Data, Job, Model
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from amlkit.automl.featurization import check_training_table, plan_featurization
from amlkit.automl.settings import (
    CLASSIFICATION_ALGORITHMS,
    AutoMLSettings,
    canonical,
    settings_from_job,
)
from amlkit.metrics import classification_metrics, regression_metrics
from localml import LocalMLClient
from localml.automl.model import AutoMLModel
from localml.errors import LocalMLValidationError, UnsupportedFeatureError
from tests.localml.conftest import stop_leftover_jobs

REPO = Path(__file__).resolve().parents[2]
DIABETES_DIR = REPO / "examples" / "data" / "diabetes"
PATIENTS_CSV = REPO / "tests" / "data" / "patient-data-0.csv"
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness",
            "SerumInsulin", "BMI", "DiabetesPedigree", "Age"]
TERMINAL = ("Completed", "Failed", "Canceled")
ENV = "AzureML-sklearn-1.5@latest"
ENSEMBLE_TIMEOUT_MINUTES = 5
#: the longest job's own limit and a minute to finish: four jobs share two cores, and a busy machine stretches them
AUTOML_TIMEOUT = ENSEMBLE_TIMEOUT_MINUTES * 60 + 60.0
MLTABLE = "paths:\n  - file: ./data.csv\ntransformations:\n  - read_delimited:\n      delimiter: ','\n"
EXIT_MAX_TRIALS = 20


def write_table(folder: Path, frame: pd.DataFrame | None = None, text: str | None = None) -> Path:
    """An MLTable folder over ``data.csv`` (written from ``frame``, or ``text`` as is)."""
    folder.mkdir(parents=True)
    if frame is not None:
        frame.to_csv(folder / "data.csv", index=False)
    else:
        (folder / "data.csv").write_text(text)
    (folder / "MLTable").write_text(MLTABLE)
    return folder


# -- the real jobs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def automl_jobs(tmp_path_factory):
    """One workspace with four AutoML jobs submitted at once: classification (explained), regression, exit_score, ensemble."""
    base = tmp_path_factory.mktemp("automl")
    client = LocalMLClient(base / "ws")

    client.data.create_or_update(Data(name="diabetes-table", type="mltable", path=str(DIABETES_DIR)))
    classification = automl.classification(
        training_data=Input(type="mltable", path="azureml:diabetes-table@latest"),
        target_column_name="Diabetic",
        primary_metric="AUC_weighted",
        test_data_size=0.3,
        experiment_name="automl-classification",
    )
    classification.set_limits(timeout_minutes=1, max_trials=3)
    classification.set_training(allowed_training_algorithms=["LightGBM"], enable_model_explainability=True)

    # scikit-learn's diabetes regression data; a few rows lack the target, which AutoML must leave out
    frame = load_diabetes(as_frame=True).frame
    frame.loc[frame.index[::100], "target"] = np.nan
    frame["weight"] = 1.0 + frame.index % 3  # a weight column trains the model but is not one of its inputs
    regression_table = write_table(base / "regression-data", frame)
    regression = automl.regression(
        training_data=Input(type="mltable", path=str(regression_table)),
        target_column_name="target",
        weight_column_name="weight",
        primary_metric="normalized_root_mean_squared_error",
        experiment_name="automl-regression",
    )
    regression.set_limits(timeout_minutes=1, max_trials=3)
    regression.set_training(allowed_training_algorithms=["light_gbm"])

    early_exit = automl.classification(
        training_data=Input(type="mltable", path=str(DIABETES_DIR)),
        target_column_name="Diabetic",
        primary_metric="accuracy",
        validation_data_size=0.2,
        experiment_name="automl-exit-score",
    )
    early_exit.set_limits(timeout_minutes=1, max_trials=EXIT_MAX_TRIALS, exit_score=0.5)
    early_exit.set_training(allowed_training_algorithms=["LightGBM"])

    ensemble = automl.classification(
        training_data=Input(type="mltable", path=str(DIABETES_DIR)),
        target_column_name="Diabetic",
        validation_data_size=0.2,
        experiment_name="automl-ensemble",
    )
    # the trial count, not the clock, must end this search: a busy machine must not leave one algorithm untried
    # (three trials of each: every one starts full-size now, as Azure's do)
    ensemble.set_limits(timeout_minutes=ENSEMBLE_TIMEOUT_MINUTES, max_trials=6)
    ensemble.set_training(allowed_training_algorithms=["LightGBM", "RandomForest"], enable_stack_ensemble=True)

    # the DP-100 AutoML exercise's job, trimmed: LogisticRegression blocked, ONNX-compatible models
    onnx = automl.classification(
        training_data=Input(type="mltable", path=str(DIABETES_DIR)),
        target_column_name="Diabetic",
        primary_metric="accuracy",
        validation_data_size=0.2,
        test_data_size=0.1,
        experiment_name="automl-onnx",
    )
    onnx.set_limits(timeout_minutes=2, max_trials=3)
    onnx.set_training(blocked_training_algorithms=["LogisticRegression"], enable_onnx_compatible_models=True)

    # Azure takes max_trials=1 (FLAML alone, given max_iter=1, would train without scoring a trial)
    single = automl.classification(
        training_data=Input(type="mltable", path=str(DIABETES_DIR)),
        target_column_name="Diabetic",
        validation_data_size=0.2,
        experiment_name="automl-single-trial",
    )
    single.set_limits(timeout_minutes=1, max_trials=1)
    single.set_training(allowed_training_algorithms=["RandomForest"])

    jobs = SimpleNamespace(client=client, base=base, regression_frame=frame)
    jobs.ensemble = client.jobs.create_or_update(ensemble)
    jobs.onnx = client.jobs.create_or_update(onnx)
    jobs.single = client.jobs.create_or_update(single)
    jobs.classification = client.jobs.create_or_update(classification)
    jobs.regression = client.jobs.create_or_update(regression)
    jobs.exit_score = client.jobs.create_or_update(early_exit)
    yield jobs
    stop_leftover_jobs(client)


def finished(helpers, client: LocalMLClient, name: str) -> Job:
    # polled slowly: the jobs need the cores more than this process does
    job = helpers.wait_for(
        lambda: (lambda j: j if j.status in TERMINAL else None)(client.jobs.get(name)),
        timeout=AUTOML_TIMEOUT, interval=0.5, what=f"AutoML job {name} to end",
    )
    status = job.status
    log = client._workspace.job_dir(name) / "user_logs" / "std_log.txt"
    assert status == "Completed", f"{job.properties.get('localml.error')}\n{log.read_text() if log.exists() else ''}"
    return job


def mlflow_client(client: LocalMLClient):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=client.mlflow_tracking_uri)


def child_runs(client: LocalMLClient, job: Job) -> list:
    runs = mlflow_client(client).search_runs(
        [job.properties["mlflow.experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{job.name}'"
    )
    return sorted(runs, key=lambda r: int(r.info.run_id.rsplit("_", 1)[1]))


def downloaded(client: LocalMLClient, name: str, folder: Path) -> Path:
    client.jobs.download(name, download_path=folder)
    return folder / "artifacts"


def test_classification_job_end_to_end(automl_jobs, helpers, tmp_path):
    client, name = automl_jobs.client, automl_jobs.classification.name
    assert isinstance(automl_jobs.classification, ClassificationJob)
    job = finished(helpers, client, name)

    # the job reads back as Azure's entity, with the best run copied into its properties
    assert isinstance(job, ClassificationJob)
    # @latest is pinned at submission (the SDK's loader drops the azureml: prefix of asset references)
    assert job.training_data.path.removeprefix("azureml:") == "diabetes-table:1"
    best_run_id = job.properties["best_child_run_id"]
    assert best_run_id.startswith(f"{name}_")
    assert job.properties["best_algorithm"] == "LightGBM"
    assert job.properties["primary_metric"] == "AUC_weighted"

    # one finished MLflow child run per trial, named <job>_<n>, with the trial's parameters and metrics
    artifacts = downloaded(client, name, tmp_path / "dl")
    summary = json.loads((artifacts / "outputs" / "automl_summary.json").read_text())
    children = child_runs(client, job)
    assert 1 <= summary["trials"] <= 3
    assert [r.info.run_id for r in children] == [f"{name}_{n}" for n in range(summary["trials"])]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.params["algorithm"] == "LightGBM"
        assert "n_estimators" in run.data.params and "num_leaves" in run.data.params
        assert 0.5 < run.data.metrics["AUC_weighted"] <= 1.0
        assert "accuracy" in run.data.metrics
    best_child = max(children, key=lambda r: r.data.metrics["AUC_weighted"])
    assert best_run_id == best_child.info.run_id == summary["best_child_run_id"]

    # the parent run holds the best run's metrics and the scores on the 30% held out as test data
    parent = mlflow_client(client).get_run(name)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["AUC_weighted"] == pytest.approx(best_child.data.metrics["AUC_weighted"])
    assert 0.5 < parent.data.metrics["test_AUC_weighted"] <= 1.0
    assert parent.data.tags["automl_best_child_run_id"] == best_run_id
    # and the job's settings as parameters, under the Azure SDK's names (10,000 rows less 30%: 3 folds chosen)
    assert {k: v for k, v in parent.data.params.items() if k != "validation"} == {
        "task_type": "classification", "primary_metric": "AUC_weighted", "target_column_name": "Diabetic",
        "timeout_minutes": "1", "max_trials": "3", "enable_early_termination": "True",
        "allowed_training_algorithms": "LightGBM", "training_algorithms": "LightGBM",
        "n_cross_validations": "3", "test_data_size": "0.3", "featurization": "auto",
        "enable_stack_ensemble": "False", "enable_model_explainability": "True",
    }
    assert parent.data.params["validation"] == "3-fold cross-validation on 7000 rows."

    # as on Azure, the best run holds its model and the model's generated training script; the job keeps
    # the 30% of rows it held out, so a refined model can be scored on the very same rows
    best_outputs = {a.path for a in mlflow_client(client).list_artifacts(best_run_id, "outputs")}
    assert {"outputs/generated_code", "outputs/mlflow-model"} <= best_outputs
    assert "LGBMClassifier(" in (artifacts / "outputs" / "generated_code" / "script.py").read_text()
    held_out = pd.read_csv(artifacts / "outputs" / "test_data" / "data.csv")
    assert len(held_out) == 3000 and (artifacts / "outputs" / "test_data" / "MLTable").is_file()

    # guardrails: PatientID is left out as an identifier
    guardrails = {g["name"]: g for g in summary["guardrails"]}
    assert guardrails["High cardinality feature detection"]["status"] == "Done"
    assert "PatientID" in guardrails["High cardinality feature detection"]["description"]
    assert summary["dropped_columns"]["PatientID"].startswith("ignored: identifier")
    assert "Validation split handling" in guardrails

    # explanations over the raw columns the model uses (PatientID is not one of them)
    explanations = artifacts / "outputs" / "explanations"
    importance = json.loads((explanations / "global_importance.json").read_text())
    assert sorted(importance) == sorted(FEATURES)
    assert all(v >= 0 for v in importance.values()) and max(importance.values()) > 0
    local = pd.read_csv(explanations / "local_importance.csv", index_col="row")
    assert sorted(local.columns) == sorted(FEATURES) and len(local) > 0
    assert (explanations / "feature_importance.png").read_bytes().startswith(b"\x89PNG")

    # the best model registers, loads with MLflow alone, and scores rows without PatientID or Diabetic
    model = client.models.create_or_update(
        Model(path=f"azureml://jobs/{name}/outputs/best_model", type="mlflow_model", name="diabetes-automl")
    )
    assert model.version == "1" and model.job_name == name
    assert mlflow_client(client).get_model_version("diabetes-automl", "1").run_id == name  # in the MLflow registry too
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(client._workspace.resolve_uri(model.path)))
    signature = loaded.metadata.signature
    assert signature is not None
    assert signature.inputs.input_names() == FEATURES
    patients = pd.read_csv(PATIENTS_CSV)
    predictions = np.asarray(loaded.predict(patients))
    assert predictions.shape == (100,)
    assert set(predictions.tolist()) <= {0, 1}


def test_onnx_compatible_job_keeps_an_onnx_model_that_predicts_what_the_mlflow_model_predicts(automl_jobs, helpers, tmp_path):
    client, name = automl_jobs.client, automl_jobs.onnx.name
    job = finished(helpers, client, name)
    artifacts = downloaded(client, name, tmp_path / "dl")
    summary = json.loads((artifacts / "outputs" / "automl_summary.json").read_text())
    assert summary["best_algorithm"] not in ("GradientBoosting", "KNN", "LogisticRegression")
    # as on Azure, the best run carries model.onnx beside its MLflow model
    best_run_id = job.properties["best_child_run_id"]
    best_outputs = {a.path for a in mlflow_client(client).list_artifacts(best_run_id, "outputs")}
    assert {"outputs/model.onnx", "outputs/mlflow-model"} <= best_outputs
    assert summary["onnx_model"]["rows_agreeing"] == summary["onnx_model"]["rows_checked"] == 1000

    import mlflow.pyfunc

    from localml.automl import onnx_export

    held_out = pd.read_csv(artifacts / "outputs" / "test_data" / "data.csv")
    mlflow_model = mlflow.pyfunc.load_model(str(client._workspace.resolve_uri(f"azureml://jobs/{name}/outputs/best_model")))
    rows = held_out[FEATURES]
    onnx_file = mlflow_client(client).download_artifacts(best_run_id, "outputs/model.onnx", str(tmp_path))
    assert list(onnx_export.predict(onnx_file, rows)) == list(np.asarray(mlflow_model.predict(rows)))
    # the search used only algorithms that convert
    trial_algorithms = {run.data.params["algorithm"] for run in child_runs(client, job)}
    assert trial_algorithms.isdisjoint({"GradientBoosting", "KNN", "LogisticRegression"})
    assert mlflow_client(client).get_run(name).data.params["enable_onnx_compatible_models"] == "True"


def test_a_job_of_one_trial_scores_that_trial_and_keeps_its_model(automl_jobs, helpers, tmp_path):
    client, name = automl_jobs.client, automl_jobs.single.name
    job = finished(helpers, client, name)
    children = child_runs(client, job)
    assert [run.info.run_id for run in children] == [f"{name}_0"]
    assert 0.5 < children[0].data.metrics["accuracy"] <= 1.0
    assert job.properties["best_child_run_id"] == f"{name}_0"
    assert (downloaded(client, name, tmp_path / "dl") / "outputs" / "mlflow-model" / "MLmodel").is_file()


def test_regression_job_end_to_end(automl_jobs, helpers, tmp_path):
    client, name = automl_jobs.client, automl_jobs.regression.name
    job = finished(helpers, client, name)
    assert isinstance(job, RegressionJob)
    assert job.properties["primary_metric"] == "normalized_root_mean_squared_error"

    # the error is minimized: the best child run has the smallest normalized RMSE
    children = child_runs(client, job)
    assert 1 <= len(children) <= 3
    best_child = min(children, key=lambda r: r.data.metrics["normalized_root_mean_squared_error"])
    assert job.properties["best_child_run_id"] == best_child.info.run_id

    metrics = mlflow_client(client).get_run(name).data.metrics
    for metric in ("r2_score", "normalized_root_mean_squared_error", "normalized_mean_absolute_error", "spearman_correlation"):
        assert metric in metrics
    assert 0 < metrics["normalized_root_mean_squared_error"] < 0.5
    assert metrics["r2_score"] > 0

    # the rows without a target were left out, not trained on (nor did they fail the job)
    frame = automl_jobs.regression_frame
    summary = json.loads((downloaded(client, name, tmp_path / "dl") / "outputs" / "automl_summary.json").read_text())
    assert summary["rows_missing_target"]["training"] == int(frame["target"].isna().sum()) > 0

    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(client._workspace.resolve_uri(f"azureml://jobs/{name}/outputs/best_model")))
    rows = frame.dropna(subset=["target"]).drop(columns=["target", "weight"]).head(50)
    predictions = np.asarray(loaded.predict(rows))
    assert predictions.shape == (50,)
    assert np.issubdtype(predictions.dtype, np.floating)
    assert np.isfinite(predictions).all() and predictions.std() > 0

    # the best model's generated training script, run as a command job on the same data, scores like the
    # best run (its cross-validation folds are its own, so within noise) and trains with the weight column
    code = downloaded(client, name, tmp_path / "dl") / "outputs" / "generated_code"
    assert "WEIGHT_COLUMN = 'weight'" in (code / "script.py").read_text()
    script_job = client.jobs.create_or_update(command(
        code=str(code), command="python script.py --training_data ${{inputs.data}}",
        inputs={"data": Input(type="mltable", path=job.training_data.path)}, environment=ENV,
    ))
    finished(helpers, client, script_job.name)
    reproduced = mlflow_client(client).get_run(script_job.name).data.metrics
    best = best_child.data.metrics["normalized_root_mean_squared_error"]
    assert reproduced["normalized_root_mean_squared_error"] == pytest.approx(best, rel=0.15)


def test_exit_score_ends_the_search_early(automl_jobs, helpers):
    client, name = automl_jobs.client, automl_jobs.exit_score.name
    job = finished(helpers, client, name)
    children = child_runs(client, job)
    # accuracy 0.5 is reached by the first trial; without exit_score all 20 trials fit in the budget
    assert 1 <= len(children) <= 3 < EXIT_MAX_TRIALS
    assert float(job.properties["best_score"]) >= 0.5



def _numbers(params: dict[str, str]) -> dict:
    """MLflow's text parameters as numbers where they are numbers."""
    def value(text):
        try:
            return float(text)
        except ValueError:
            return text
    return {key: value(text) for key, text in params.items() if key != "algorithm"}


def _suggested(estimator: str) -> dict:
    """FLAML's zero-shot (data-dependent) configuration for ``estimator`` on the diabetes sample."""
    from flaml.default import suggest_config

    diabetes = pd.read_csv(DIABETES_DIR / "diabetes.csv")
    return suggest_config("binary", diabetes[FEATURES].to_numpy(), diabetes["Diabetic"].to_numpy(), estimator, k=1)[0]["hyperparameters"]


def test_first_trial_of_each_algorithm_starts_from_its_strong_configuration(automl_jobs, helpers):
    client, name = automl_jobs.client, automl_jobs.ensemble.name
    first = {}
    for run in child_runs(client, finished(helpers, client, name)):
        first.setdefault(run.data.params["algorithm"], _numbers(run.data.params))
    # FLAML's data-dependent defaults, not its cheapest model (4 trees of 4 leaves)
    assert first["LightGBM"] == pytest.approx(_suggested("lgbm"))
    # the forest's suggestion has more leaves than FLAML allows for 8,000 training rows (half of them): it starts at that bound
    assert first["RandomForest"] == pytest.approx({**_suggested("rf"), "max_leaves": 4000})


def test_strong_starts_keep_flamls_suggestions_inside_its_search_space_and_scikit_learns_defaults():
    from flaml.automl.contrib.histgb import HistGradientBoostingEstimator
    from flaml.automl.task.factory import task_factory
    from sklearn.ensemble import HistGradientBoostingClassifier

    from localml.automl.starts import search_order, starting_points

    diabetes = pd.read_csv(DIABETES_DIR / "diabetes.csv")
    estimators = ["sgd", "kneighbor", "rf", "extra_tree", "lgbm", "histgb", "xgboost"]
    points = starting_points("binary", diabetes[FEATURES].to_numpy(), diabetes["Diabetic"].to_numpy(), estimators, 10000)
    assert points["lgbm"] == _suggested("lgbm") and points["extra_tree"] == _suggested("extra_tree")
    # FLAML bounds trees by the rows (XGBoost suggests 13,499) and a forest's leaves by half of them
    assert points["xgboost"] == {**_suggested("xgboost"), "n_estimators": 10000}
    assert points["rf"] == {**_suggested("rf"), "max_leaves": 5000}
    # GradientBoosting has no FLAML suggestion: scikit-learn's own defaults (but the smallest l2 FLAML allows)
    chosen = HistGradientBoostingEstimator(task_factory("binary"), **points["histgb"]).params
    defaults = HistGradientBoostingClassifier().get_params()
    for key in ("max_iter", "max_leaf_nodes", "min_samples_leaf", "learning_rate", "max_bins"):
        assert chosen[key] == pytest.approx(defaults[key]), key
    # FLAML's own first SGD and KNN configurations already are their library's defaults
    assert "sgd" not in points and "kneighbor" not in points
    assert search_order(estimators) == ["lgbm", "xgboost", "histgb", "extra_tree", "rf", "kneighbor", "sgd"]


# -- submission checks: bad input fails at create_or_update, and no job exists -------------------

def _classification(path, *, target="Diabetic", input_type="mltable"):
    job = automl.classification(training_data=Input(type=input_type, path=str(path)), target_column_name=target)
    job.set_limits(timeout_minutes=1, max_trials=1)
    return job


def _missing_target(tmp_path):
    return _classification(DIABETES_DIR, target="Outcome")


def _single_class(tmp_path):
    return _classification(write_table(tmp_path / "single", text="a,b,y\n1,2,1\n3,4,1\n5,6,1\n"), target="y")


def _empty_table(tmp_path):
    return _classification(write_table(tmp_path / "empty", text="a,b,y\n"), target="y")


def _uri_file(tmp_path):
    return _classification(DIABETES_DIR / "diabetes.csv", input_type="uri_file")


def _unavailable_algorithm(tmp_path):
    job = _classification(DIABETES_DIR)
    job.set_training(allowed_training_algorithms=["LightGBM", "DecisionTree"])
    return job


def _every_algorithm_blocked(tmp_path):
    job = _classification(DIABETES_DIR)
    job.set_training(allowed_training_algorithms=["LightGBM"], blocked_training_algorithms=["LightGBM"])
    return job


def _forecasting(tmp_path):
    job = automl.forecasting(
        training_data=Input(type="mltable", path=str(DIABETES_DIR)),
        target_column_name="Diabetic",
        primary_metric="normalized_root_mean_squared_error",
    )
    job.set_forecast_settings(time_column_name="Age", forecast_horizon=3)
    return job


def _featurization_unknown_column(tmp_path):
    job = _classification(DIABETES_DIR)
    # mode="custom" is how Azure's documentation customizes featurization
    job.set_featurization(mode="custom", column_name_and_types={"Age": "Categorical", "Smoker": "Categorical"})
    return job


@pytest.mark.parametrize(
    "make_job, error, expected",
    [
        pytest.param(_missing_target, LocalMLValidationError,
                     ["'Outcome' is not in the training data", "PatientID, Pregnancies, PlasmaGlucose", "Diabetic"],
                     id="missing-target"),
        pytest.param(_single_class, LocalMLValidationError, ["'y' has a single class (1)", "at least two"], id="single-class"),
        pytest.param(_empty_table, LocalMLValidationError, ["no rows"], id="empty-table"),
        pytest.param(_uri_file, LocalMLValidationError, ["training_data must be an MLTable input", "'uri_file'"],
                     id="uri-file"),
        pytest.param(_unavailable_algorithm, UnsupportedFeatureError, ["DecisionTree", "LightGBM, GradientBoosting"],
                     id="unavailable-algorithm"),
        pytest.param(_every_algorithm_blocked, LocalMLValidationError, ["Every training algorithm is blocked"],
                     id="all-blocked"),
        pytest.param(_forecasting, NotImplementedError, ["forecasting"], id="forecasting"),
        pytest.param(_featurization_unknown_column, LocalMLValidationError, ["not in the data: Smoker"],
                     id="featurization-unknown-column"),
    ],
)
def test_bad_automl_job_is_rejected_at_submission(ml_client, tmp_path, make_job, error, expected):
    job = make_job(tmp_path)
    with pytest.raises(error) as raised:
        ml_client.jobs.create_or_update(job)
    message = str(raised.value)
    for text in expected:
        assert text in message, message
    assert "np.int64" not in message
    assert list(ml_client.jobs.list()) == []


def test_unknown_algorithm_names_fail_in_the_sdk_before_localml():
    """Azure's SDK itself rejects names it does not know (not localml's to handle), at set_training."""
    job = _classification(DIABETES_DIR)
    with pytest.raises(KeyError):
        job.set_training(allowed_training_algorithms=["NoSuchAlgorithm"])


def test_custom_featurization_is_accepted():
    """Azure's documented mode='custom' (column purposes, blocked transformers) submits; mode 'off' stays off."""
    job = _classification(DIABETES_DIR)
    job.set_featurization(mode="custom", column_name_and_types={"Pregnancies": "Categorical"},
                          blocked_transformers=["LabelEncoder"])
    settings = settings_from_job(job)
    assert settings.featurization == "auto"
    assert settings.column_purposes == {"Pregnancies": "Categorical"}
    assert settings.blocked_transformers == ["LabelEncoder"]
    off = _classification(DIABETES_DIR)
    off.set_featurization(mode="off")
    assert settings_from_job(off).featurization == "off"


# -- settings: Azure names -> FLAML ----------------------------------------------------------

def test_settings_map_azure_algorithm_names_in_both_spellings():
    job = _classification(DIABETES_DIR)
    job.set_training(allowed_training_algorithms=["LightGBM", "xg_boost_classifier", "random_forest", "LogisticRegression"],
                     blocked_training_algorithms=["LogisticRegression"])
    settings = settings_from_job(job)
    assert settings.estimators == ["lgbm", "xgboost", "rf"]
    # the SDK's own round trip (stored spec -> entity) spells them light_gbm, ...: same result
    reloaded = Job._load(data=job._to_dict())
    assert job._to_dict()["training"]["allowed_training_algorithms"][0] == "light_gbm"
    assert settings_from_job(reloaded).estimators == ["lgbm", "xgboost", "rf"]
    # names as plain strings, either spelling
    for spelling in ("LightGBM", "light_gbm", "lightgbm", "LIGHT_GBM"):
        assert canonical(spelling, CLASSIFICATION_ALGORITHMS, "algorithm") == "LightGBM"
    with pytest.raises(LocalMLValidationError, match="Unknown algorithm 'NoSuchAlgorithm'.*LightGBM"):
        canonical("NoSuchAlgorithm", CLASSIFICATION_ALGORITHMS, "algorithm")

    regression = automl.regression(training_data=Input(type="mltable", path=str(DIABETES_DIR)),
                                   target_column_name="Age", primary_metric="r2_score")
    regression.set_training(allowed_training_algorithms=["ElasticNet", "xg_boost_regressor", "GradientBoosting"])
    assert settings_from_job(regression).estimators == ["enet", "xgboost", "histgb"]
    assert settings_from_job(regression).maximize
    minimized = automl.regression(training_data=Input(type="mltable", path=str(DIABETES_DIR)), target_column_name="Age",
                                  primary_metric="NormalizedRootMeanSquaredError")
    assert settings_from_job(minimized).primary_metric == "normalized_root_mean_squared_error"
    assert not settings_from_job(minimized).maximize


def test_settings_blocked_algorithms_and_ensembles():
    job = _classification(DIABETES_DIR)
    # DecisionTree and SVM are Azure algorithms localml does not run: blocking them changes nothing
    job.set_training(blocked_training_algorithms=["LogisticRegression", "light_gbm", "DecisionTree", "SVM"],
                     enable_vote_ensemble=True)
    settings = settings_from_job(job)
    assert settings.estimators == [v for k, v in CLASSIFICATION_ALGORITHMS.items() if k not in ("LogisticRegression", "LightGBM")]
    assert any("vote" in warning.lower() for warning in settings.warnings)
    assert not settings.stack_ensemble

    plain = _classification(DIABETES_DIR)
    plain.set_training(enable_stack_ensemble=True)
    settings = settings_from_job(plain)
    assert settings.estimators == list(CLASSIFICATION_ALGORITHMS.values())
    assert settings.stack_ensemble and settings.warnings == []


def test_settings_of_an_onnx_compatible_search_leave_out_what_does_not_convert():
    job = _classification(DIABETES_DIR)
    job.set_training(blocked_training_algorithms=["LogisticRegression"], enable_onnx_compatible_models=True,
                     enable_stack_ensemble=True)
    settings = settings_from_job(job)
    assert settings.onnx_compatible
    assert settings.estimators == ["sgd", "rf", "extra_tree", "lgbm", "xgboost"]
    assert not settings.stack_ensemble and any("ONNX" in warning for warning in settings.warnings)
    assert settings.mlflow_params()["enable_onnx_compatible_models"] == "True"

    asked = _classification(DIABETES_DIR)
    asked.set_training(allowed_training_algorithms=["LightGBM", "GradientBoosting"], enable_onnx_compatible_models=True)
    with pytest.raises(LocalMLValidationError, match="GradientBoosting cannot be used .*skl2onnx.*Allow only ONNX-compatible"):
        settings_from_job(asked)


def test_settings_become_mlflow_parameters_under_the_azure_sdk_names():
    job = automl.regression(training_data=Input(type="mltable", path=str(DIABETES_DIR)), target_column_name="Age",
                            primary_metric="r2_score", validation_data_size=0.2, weight_column_name="BMI")
    job.set_limits(timeout_minutes=2.5, trial_timeout_minutes=1, max_trials=7, max_concurrent_trials=2,
                   enable_early_termination=False, exit_score=0.9)
    job.set_training(blocked_training_algorithms=["LightGBM", "DecisionTree"], enable_stack_ensemble=True)
    job.set_featurization(mode="custom", column_name_and_types={"Pregnancies": "Categorical"}, blocked_transformers=["LabelEncoder"])
    assert settings_from_job(job).mlflow_params() == {
        "task_type": "regression", "primary_metric": "r2_score", "target_column_name": "Age", "weight_column_name": "BMI",
        "timeout_minutes": "2.5", "trial_timeout_minutes": "1", "max_trials": "7", "max_concurrent_trials": "2",
        "enable_early_termination": "False", "exit_score": "0.9",
        "blocked_training_algorithms": "LightGBM, DecisionTree",
        "training_algorithms": "ElasticNet, LassoLars, SGD, KNN, RandomForest, ExtremeRandomTrees, GradientBoosting, XGBoostRegressor",
        "validation_data_size": "0.2", "featurization": "auto", "blocked_transformers": "LabelEncoder",
        "column_name_and_types": '{"Pregnancies": "Categorical"}', "enable_stack_ensemble": "True",
        "enable_model_explainability": "False",
    }


def test_settings_limits():
    job = _classification(DIABETES_DIR)
    job.set_limits(timeout_minutes=2, trial_timeout_minutes=1, max_trials=7, exit_score=0.9, max_concurrent_trials=4)
    settings = settings_from_job(job)
    assert (settings.timeout_seconds, settings.trial_timeout_seconds, settings.max_trials, settings.exit_score) == (120, 60, 7, 0.9)
    assert any("max_concurrent_trials=4" in w for w in settings.warnings)
    job.set_limits(max_trials=0)
    with pytest.raises(LocalMLValidationError, match="max_trials"):
        settings_from_job(job)


# -- featurization and guardrails ------------------------------------------------------------

def messy_frame(rows: int = 200, minority: int = 10) -> pd.DataFrame:
    """Numbers with gaps, a category with gaps, a constant, an ID, a date; label 'yes' (rare) when glucose is high."""
    rng = np.random.default_rng(0)
    glucose = np.sort(rng.normal(100, 20, rows))
    frame = pd.DataFrame({
        "glucose": glucose,
        "bmi": rng.normal(28, 4, rows),
        "smoker": rng.choice(["never", "former", "current"], rows).astype(object),
        "clinic": "north",
        "patient_code": [f"P-{i:05d}" for i in rng.permutation(rows)],
        "visit": pd.date_range("2024-01-01", periods=rows, freq="D"),
        "label": np.where(np.arange(rows) >= rows - minority, "yes", "no"),
    })
    frame.loc[frame.index[1::9], "bmi"] = np.nan
    frame.loc[frame.index[::10], "smoker"] = np.nan
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


def classification_settings(**kwargs) -> AutoMLSettings:
    return AutoMLSettings(task="classification", target_column="label", primary_metric="AUC_weighted",
                          estimators=["lgbm"], **kwargs)


def test_featurization_of_messy_data():
    frame = messy_frame()
    settings = classification_settings()
    check_training_table(frame, settings)
    plan = plan_featurization(frame, settings, "Holdout of 10% of 200 rows for validation.")

    assert plan.numeric == ["glucose", "bmi"]
    assert plan.categorical == ["smoker"]
    assert set(plan.dropped) == {"clinic", "patient_code", "visit"}
    assert plan.dropped["clinic"].startswith("ignored: constant")
    assert plan.dropped["patient_code"].startswith("ignored: identifier")
    assert plan.dropped["visit"].startswith("ignored: datetime")

    guardrails = {g.name: g for g in plan.guardrails}
    assert guardrails["Validation split handling"].status == "Done"
    assert guardrails["Missing feature values imputation"].status == "Done"
    for column in ("bmi", "smoker"):
        missing = int(frame[column].isna().sum())
        assert missing > 0 and f"{column} ({missing})" in guardrails["Missing feature values imputation"].description
    assert guardrails["High cardinality feature detection"].status == "Done"
    assert "patient_code" in guardrails["High cardinality feature detection"].description
    assert guardrails["Class balancing detection"].status == "Alerted"  # 190 'no' to 10 'yes'
    assert "'yes'" in guardrails["Class balancing detection"].description

    # the same checks pass on tidy, balanced data
    tidy = frame[["glucose", "label"]].assign(label=np.where(frame["glucose"] > frame["glucose"].median(), "yes", "no"))
    states = {g.name: g.status for g in plan_featurization(tidy, settings, "x").guardrails}
    assert states["Class balancing detection"] == "Passed"
    assert states["Missing feature values imputation"] == "Passed"
    assert states["High cardinality feature detection"] == "Passed"
    # regression has no class balance to check
    regression = AutoMLSettings(task="regression", target_column="glucose", primary_metric="r2_score", estimators=["lgbm"])
    assert "Class balancing detection" not in {g.name for g in plan_featurization(frame, regression, "x").guardrails}


def test_featurized_model_scores_unseen_categories_and_missing_values(tmp_path):
    frame = messy_frame()
    plan = plan_featurization(frame, classification_settings(), "x")
    featurizer = plan.featurizer([]).fit(frame[plan.feature_columns])
    classes = ["no", "yes"]
    y = frame["label"].map({label: i for i, label in enumerate(classes)})
    estimator = LogisticRegression(C=100, max_iter=1000).fit(featurizer.transform(frame[plan.feature_columns]), y)
    model = AutoMLModel(featurizer, estimator, plan.feature_columns, classes)

    new = pd.DataFrame({
        "glucose": [200.0, 40.0, np.nan, 90.0],
        "bmi": [np.nan, 25.0, 30.0, np.nan],
        "smoker": ["vaper", np.nan, None, "never"],  # an unseen category, a NaN, a None
        "patient_code": ["new-1", "new-2", "new-3", "new-4"],  # dropped columns may be there or not
    })
    predicted = model.predict(new)
    assert list(predicted[:2]) == ["yes", "no"]  # class indices mapped back to the labels
    assert set(predicted) <= {"yes", "no"}
    probabilities = model.predict_proba(new)
    assert probabilities.shape == (4, 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert list(model.classes_) == classes
    with pytest.raises(ValueError, match="missing the model's columns \\['smoker'\\]"):
        model.predict(new.drop(columns=["smoker"]))

    # saved as the job saves it, it loads with MLflow alone and still scores such rows
    import mlflow.pyfunc

    from localml.automl.driver import save_model

    save_model(model, frame[plan.feature_columns].head(5), tmp_path / "model")
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    assert list(loaded.predict(new[plan.feature_columns].iloc[:2])) == ["yes", "no"]


def test_featurization_off_needs_numeric_complete_data():
    frame = messy_frame()
    with pytest.raises(LocalMLValidationError, match=r"Featurization is off.*'smoker'.*mode='auto'"):
        plan_featurization(frame, classification_settings(featurization="off"), "x")
    clean = frame[["glucose", "bmi", "label"]].dropna()
    plan = plan_featurization(clean, classification_settings(featurization="off"), "x")
    assert plan.numeric == ["glucose", "bmi"] and plan.categorical == []


def test_column_purposes_override_detection():
    frame = messy_frame()
    settings = classification_settings(column_purposes={"glucose": "Categorical", "smoker": "Ignore"})
    plan = plan_featurization(frame, settings, "x")
    assert plan.categorical == ["glucose"] and "smoker" in plan.dropped
    with pytest.raises(LocalMLValidationError, match="marked Numeric"):
        plan_featurization(frame, classification_settings(column_purposes={"smoker": "Numeric"}), "x")


def test_rows_without_a_target_are_left_out():
    from amlkit.automl.featurization import drop_missing_target

    frame = messy_frame()
    frame.loc[frame.index[:3], "label"] = None
    settings = classification_settings()
    check_training_table(frame, settings)  # a few missing labels do not reject the job
    kept, dropped = drop_missing_target(frame, settings)
    assert dropped == 3 and len(kept) == len(frame) - 3 and kept["label"].notna().all()
    with pytest.raises(LocalMLValidationError, match="has no values"):
        check_training_table(frame.assign(label=None), settings)


# -- metrics ---------------------------------------------------------------------------------

def test_norm_macro_recall_is_zero_for_a_constant_predictor_and_one_for_a_perfect_one():
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    constant = np.tile([0.9, 0.1], (len(y), 1))
    perfect = np.eye(2)[y]
    assert classification_metrics(y, constant, 2)["norm_macro_recall"] == pytest.approx(0.0)
    assert classification_metrics(y, perfect, 2)["norm_macro_recall"] == pytest.approx(1.0)
    y3 = np.array([0, 1, 2, 2, 1, 0])
    assert classification_metrics(y3, np.tile([0.2, 0.5, 0.3], (6, 1)), 3)["norm_macro_recall"] == pytest.approx(0.0)
    assert classification_metrics(y3, np.eye(3)[y3], 3)["norm_macro_recall"] == pytest.approx(1.0)


def test_auc_weighted_matches_scikit_learn_on_binary_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    positive = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    probabilities = np.column_stack([1 - positive, positive])
    values = classification_metrics(y, probabilities, 2)
    assert values["AUC_weighted"] == pytest.approx(roc_auc_score(y, positive))
    assert values["AUC_weighted"] == pytest.approx(roc_auc_score(y, positive, average="weighted"))
    assert values["accuracy"] == pytest.approx(np.mean((positive > 0.5) == y))


def test_regression_metrics_normalize_by_the_target_range():
    y = np.array([0.0, 10.0, 20.0, 30.0])
    predicted = y + np.array([1.0, -1.0, 1.0, -1.0])
    values = regression_metrics(y, predicted, target_range=30.0)
    assert values["root_mean_squared_error"] == pytest.approx(1.0)
    assert values["normalized_root_mean_squared_error"] == pytest.approx(1 / 30)
    assert values["spearman_correlation"] == pytest.approx(1.0)


def test_integer_columns_are_identifiers_only_when_named_so():
    rows = 100
    frame = pd.DataFrame({
        "CustomerId": np.arange(rows),
        "income": np.arange(rows) * 37 + 1000,  # almost unique, but a measurement
        "label": ["yes", "no"] * (rows // 2),
    })
    plan = plan_featurization(frame, AutoMLSettings(task="classification", target_column="label", primary_metric="accuracy", estimators=["lgbm"]), "holdout")
    assert "CustomerId" in plan.dropped and plan.dropped["CustomerId"].startswith("ignored: identifier")
    assert "income" in plan.numeric


def test_weights_must_be_non_negative_numbers():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "w": [1.0, -1.0, 2.0], "y": [0, 1, 0]})
    settings = AutoMLSettings(task="classification", target_column="y", primary_metric="accuracy", estimators=["lgbm"], weight_column="w")
    with pytest.raises(LocalMLValidationError, match="Weight column 'w' must hold a non-negative number"):
        check_training_table(frame, settings)


def test_stack_ensemble_combines_the_best_configurations(automl_jobs, helpers):
    import mlflow.sklearn
    from sklearn.ensemble import StackingClassifier

    client, name = automl_jobs.client, automl_jobs.ensemble.name
    job = finished(helpers, client, name)
    assert job.properties["best_algorithm"] == "StackEnsemble"
    model = mlflow.sklearn.load_model(str(client._workspace.resolve_uri(f"azureml://jobs/{name}/outputs/best_model")))
    assert isinstance(model.estimator, StackingClassifier)
    assert {member for member, _ in model.estimator.estimators} == {"lgbm", "rf"}
    predictions = model.predict(pd.read_csv(PATIENTS_CSV))
    assert set(predictions) <= {0, 1}
