"""The AutoML model's plain prediction path gives exactly what scikit-learn and LightGBM give on the same rows.

Each model is built as the AutoML driver builds its best model: the plan's featurizer fitted on the rows, an
estimator trained on its output, ``AutoMLModel`` over both. The reference is the fitted featurizer's own
``transform`` followed by the estimator's own scikit-learn ``predict`` / ``predict_proba``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from amlkit.automl.featurization import plan_featurization
from amlkit.automl.settings import AutoMLSettings
from localml.automl.model import AutoMLModel

REPO = Path(__file__).resolve().parents[2]
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"


@pytest.fixture(scope="module")
def patients() -> pd.DataFrame:
    """Diabetes rows with a text column, missing values in it and in two numbers, an integer column kept whole."""
    frame = pd.read_csv(DIABETES_CSV, nrows=1200).drop(columns=["PatientID"])
    frame["AgeGroup"] = np.where(frame["Age"] > 40, "older", "younger")
    frame["Weight"] = np.select([frame["BMI"] < 25, frame["BMI"] < 30], ["normal", "over"], "obese")
    frame.loc[frame.index[::17], "AgeGroup"] = None
    frame.loc[frame.index[::13], "BMI"] = np.nan
    frame.loc[frame.index[::11], "PlasmaGlucose"] = np.nan
    return frame


def build(frame: pd.DataFrame, estimator, target="Diabetic", task="classification", blocked=(), scale=True):
    settings = AutoMLSettings(task=task, target_column=target, primary_metric="accuracy", estimators=["lgbm"])
    train = frame.iloc[:1000]
    plan = plan_featurization(train, settings, "holdout")
    featurizer = plan.featurizer(list(blocked), scale=scale).fit(train[plan.feature_columns])
    classes = sorted(train[target].unique()) if task == "classification" else None
    labels = train[target].map({label: i for i, label in enumerate(classes)}) if classes else train[target]
    estimator.fit(featurizer.transform(train[plan.feature_columns]), labels.to_numpy())
    return AutoMLModel(featurizer, estimator, plan.feature_columns, classes)


def reference_proba(model: AutoMLModel, rows: pd.DataFrame) -> np.ndarray:
    return model.estimator.predict_proba(model.featurizer.transform(rows[model.feature_columns]))


def reference_labels(model: AutoMLModel, rows: pd.DataFrame) -> list:
    indices = model.estimator.predict(model.featurizer.transform(rows[model.feature_columns]))
    return list(np.asarray(model.classes)[indices.astype(int)])


def lgbm_classifier():
    return lightgbm.LGBMClassifier(n_estimators=25, num_leaves=15, n_jobs=1, verbose=-1)


@pytest.mark.parametrize("blocked, scale", [((), True), ((), False), (("OneHotEncoder",), True)],
                         ids=["one-hot and scaled", "unscaled as in an ONNX search", "ordinal categories"])
def test_a_lightgbm_model_predicts_exactly_what_its_featurizer_and_estimator_predict(patients, blocked, scale):
    model = build(patients, lgbm_classifier(), blocked=blocked, scale=scale)
    held_out = patients.iloc[1000:].drop(columns=["Diabetic"])
    # the features themselves, bit for bit: trees would hide a small difference that crossed no threshold
    assert np.array_equal(model._features(held_out), model.featurizer.transform(held_out[model.feature_columns]))
    assert np.array_equal(model.predict_proba(held_out), reference_proba(model, held_out))
    assert list(model.predict(held_out)) == reference_labels(model, held_out)
    for row in range(5):  # one row at a time, as an endpoint asks
        one = held_out.iloc[[row]]
        assert np.array_equal(model.predict_proba(one), reference_proba(model, one))


def test_a_multiclass_model_and_a_regressor_predict_exactly_as_lightgbm_does(patients):
    labelled = patients.assign(Weight=patients["Weight"].fillna("normal"))
    three_classes = build(labelled, lgbm_classifier(), target="Weight")
    held_out = labelled.iloc[1000:].drop(columns=["Weight"])
    assert np.array_equal(three_classes.predict_proba(held_out), reference_proba(three_classes, held_out))
    assert list(three_classes.predict(held_out)) == reference_labels(three_classes, held_out)
    assert set(three_classes.predict(held_out)) <= {"normal", "over", "obese"}

    regressor = build(patients.dropna(subset=["PlasmaGlucose"]), lightgbm.LGBMRegressor(n_estimators=25, verbose=-1),
                      target="PlasmaGlucose", task="regression")
    rows = patients.iloc[1000:].drop(columns=["PlasmaGlucose"])
    expected = regressor.estimator.predict(regressor.featurizer.transform(rows[regressor.feature_columns]))
    assert np.array_equal(regressor.predict(rows), expected)


def test_another_estimator_predicts_through_its_own_api_on_the_same_features(patients):
    model = build(patients, RandomForestClassifier(n_estimators=5, random_state=0))
    held_out = patients.iloc[1000:].drop(columns=["Diabetic"])
    assert np.array_equal(model.predict_proba(held_out), reference_proba(model, held_out))
    assert list(model.predict(held_out)) == reference_labels(model, held_out)


def test_numbers_sent_as_text_are_converted_and_infinite_ones_refused_as_scikit_learn_does(patients):
    model = build(patients, lgbm_classifier())
    rows = patients.iloc[1000:1010].drop(columns=["Diabetic"])
    as_text = rows.astype({"Age": str, "BMI": object})
    assert np.array_equal(model.predict_proba(as_text), reference_proba(model, rows))
    infinite = rows.assign(BMI=np.inf)
    with pytest.raises(ValueError, match="infinity"):
        model.featurizer.transform(infinite[model.feature_columns])
    with pytest.raises(ValueError, match="infinity"):
        model.predict(infinite)


def test_a_model_pickles_the_same_before_and_after_it_has_predicted(patients):
    model = build(patients, lgbm_classifier())
    before = pickle.dumps(model)
    expected = model.predict_proba(patients.iloc[1000:])
    assert pickle.dumps(model) == before  # what the fast path derives is not saved with the model
    assert np.array_equal(pickle.loads(before).predict_proba(patients.iloc[1000:]), expected)
