"""ONNX-compatible AutoML models: every algorithm an ONNX-compatible search may pick converts, and the ONNX
model predicts what the MLflow model predicts.

Each model here is built the way the AutoML driver builds its best model: the plan's featurizer (unscaled,
as in an ONNX-compatible search), FLAML's own estimator for the algorithm, and ``AutoMLModel`` over both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flaml.automl.task.factory import task_factory

from amlkit.automl.featurization import plan_featurization
from amlkit.automl.settings import (
    CLASSIFICATION_ALGORITHMS,
    NOT_ONNX_CONVERTIBLE,
    REGRESSION_ALGORITHMS,
    AutoMLSettings,
)
from localml.automl import onnx_export
from localml.automl.model import AutoMLModel

REPO = Path(__file__).resolve().parents[2]
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
#: small, odd-sized forests: a forest of pure leaves never ties at 0.5 on two classes
ESTIMATOR_OPTIONS = {"rf": {"n_estimators": 5}, "extra_tree": {"n_estimators": 5}, "lgbm": {"n_estimators": 20},
                     "xgboost": {"n_estimators": 20}}


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    """Diabetes rows with a text column (and a missing value in it and in a number), labels as words."""
    frame = pd.read_csv(DIABETES_CSV, nrows=1500).drop(columns=["PatientID"])
    frame["AgeGroup"] = np.where(frame["Age"] > 40, "older", "younger")
    frame.loc[3, "AgeGroup"] = None
    frame.loc[5, "BMI"] = np.nan
    frame["Diabetic"] = frame["Diabetic"].map({0: "no", 1: "yes"})
    return frame


def automl_model(frame: pd.DataFrame, target: str, task: str, algorithm: str) -> AutoMLModel:
    settings = AutoMLSettings(task=task, target_column=target, primary_metric="accuracy", estimators=[algorithm],
                              onnx_compatible=True)
    train = frame.iloc[:1000]
    plan = plan_featurization(train, settings, "holdout")
    featurizer = plan.featurizer([], scale=False).fit(train[plan.feature_columns])
    classes = sorted(train[target].unique()) if task == "classification" else None
    labels = train[target].map({label: i for i, label in enumerate(classes)}) if classes else train[target]
    flaml_task = task_factory("binary" if task == "classification" else "regression")
    estimator = flaml_task.estimator_class_from_str(algorithm)(task=flaml_task, n_jobs=1, **ESTIMATOR_OPTIONS.get(algorithm, {}))
    estimator.fit(featurizer.transform(train[plan.feature_columns]), labels.to_numpy())
    return AutoMLModel(featurizer, estimator.model, plan.feature_columns, classes)


def save_onnx(model: AutoMLModel, frame: pd.DataFrame, folder: Path) -> Path:
    path = folder / onnx_export.ONNX_FILE
    path.write_bytes(onnx_export.convert(model, frame[model.feature_columns].head(5)).SerializeToString())
    return path


CONVERTIBLE_CLASSIFIERS = [name for name in CLASSIFICATION_ALGORITHMS if name not in NOT_ONNX_CONVERTIBLE]
CONVERTIBLE_REGRESSORS = [name for name in REGRESSION_ALGORITHMS if name not in NOT_ONNX_CONVERTIBLE]


@pytest.mark.parametrize("algorithm", CONVERTIBLE_CLASSIFIERS)
# unscaled features (see localml.automl.onnx_export) make lbfgs take more than its 100 iterations here
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_each_convertible_classifier_predicts_the_same_labels_and_probabilities_in_onnx(patients, tmp_path, algorithm):
    model = automl_model(patients, "Diabetic", "classification", CLASSIFICATION_ALGORITHMS[algorithm])
    path = save_onnx(model, patients, tmp_path)
    held_out = patients.iloc[1000:][model.feature_columns]
    assert list(onnx_export.predict(path, held_out)) == list(model.predict(held_out))
    np.testing.assert_allclose(onnx_export.predict_proba(path, held_out), model.predict_proba(held_out), atol=1e-5)


@pytest.mark.parametrize("algorithm", CONVERTIBLE_REGRESSORS)
def test_each_convertible_regressor_predicts_the_same_values_in_onnx(patients, tmp_path, algorithm):
    frame = patients.drop(columns=["Diabetic"])
    model = automl_model(frame, "PlasmaGlucose", "regression", REGRESSION_ALGORITHMS[algorithm])
    path = save_onnx(model, frame, tmp_path)
    held_out = frame.iloc[1000:][model.feature_columns]
    np.testing.assert_allclose(onnx_export.predict(path, held_out), model.predict(held_out), rtol=1e-4, atol=1e-3)


def test_onnx_model_takes_one_input_per_column_and_a_missing_category_as_empty_text(patients, tmp_path):
    import onnxruntime

    model = automl_model(patients, "Diabetic", "classification", "lgbm")
    path = save_onnx(model, patients, tmp_path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = {graph_input.name: graph_input.type for graph_input in session.get_inputs()}
    assert inputs["AgeGroup"] == "tensor(string)" and inputs["BMI"] == "tensor(float)"
    assert set(inputs) == set(model.feature_columns)
    row = patients.iloc[[3]][model.feature_columns]  # AgeGroup is missing here
    assert list(onnx_export.predict(path, row)) == list(model.predict(row))
