"""The training script written for an AutoML job's best model: every algorithm's script rebuilds the same model.

These run in-process and take seconds; that a generated script, run as a job, reproduces the AutoML
job's scores is checked on real AutoML jobs in test_automl.py and by the refine flow's tests.
"""

from __future__ import annotations

import runpy
import sys

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestRegressor,
    StackingClassifier,
)
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neighbors import KNeighborsClassifier
from xgboost import XGBClassifier

from amlkit.automl.featurization import plan_featurization
from amlkit.automl.generated_code import ENVIRONMENT_FILE, SCRIPT_FILE
from amlkit.automl.settings import AutoMLSettings
from localml.automl import codegen

ROWS = 60


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": rng.integers(20, 80, ROWS),
        "glucose": rng.normal(100, 20, ROWS),
        "smoker": rng.choice(["yes", "no", None], ROWS),
        "label": rng.choice(["sick", "well"], ROWS),
        "amount": rng.normal(5, 1, ROWS),
    })


def settings(task: str, **overrides) -> AutoMLSettings:
    target = "label" if task == "classification" else "amount"
    metric = "AUC_weighted" if task == "classification" else "normalized_root_mean_squared_error"
    values = dict(task=task, target_column=target, primary_metric=metric, estimators=[], n_cross_validations=3, test_data_size=0.2)
    return AutoMLSettings(**{**values, **overrides})


def generate(task: str, estimator, **overrides) -> tuple[str, dict]:
    config = settings(task, **overrides)
    data = frame().drop(columns=["amount" if task == "classification" else "label"])
    plan = plan_featurization(data, config, "3-fold cross-validation on 60 rows.")
    featurizer = plan.featurizer([]).fit(data[plan.feature_columns])
    X = featurizer.transform(data[plan.feature_columns])
    y = data[config.target_column]
    classes = sorted(y.unique()) if task == "classification" else None
    estimator.fit(X, np.searchsorted(classes, y) if classes else y)
    files = codegen.generate(config, featurizer, estimator, classes, "job_1", "job_1_3", type(estimator).__name__, 0.9, "3-fold.")
    return files[SCRIPT_FILE], files


def rebuilt(script: str, tmp_path, monkeypatch, *arguments: str):
    """The model the script builds from its command line (its main is not run)."""
    path = tmp_path / "script.py"
    path.write_text(script)
    monkeypatch.setattr(sys, "argv", ["script.py", "--training_data", "data", *arguments])
    namespace = runpy.run_path(str(path), run_name="generated")
    return namespace["build_model"](namespace["parse_args"]()), namespace


ESTIMATORS = [
    ("classification", LGBMClassifier(n_estimators=7, num_leaves=5, learning_rate=0.07, colsample_bytree=0.8, random_state=3, verbose=-1)),
    ("classification", XGBClassifier(n_estimators=4, max_leaves=6, learning_rate=0.1, subsample=0.9, grow_policy="lossguide",
                                     tree_method="hist", random_state=10242048, verbosity=0)),
    ("classification", ExtraTreesClassifier(n_estimators=5, max_features=0.5, criterion="entropy", max_leaf_nodes=7, random_state=1)),
    ("classification", HistGradientBoostingClassifier(max_iter=11, max_leaf_nodes=4, learning_rate=0.05, random_state=2)),
    ("classification", LogisticRegression(C=3.5)),
    ("classification", KNeighborsClassifier(n_neighbors=9, weights="distance")),
    ("classification", SGDClassifier(loss="modified_huber", penalty="elasticnet", alpha=5e-5, average=True, random_state=4)),
    ("regression", LGBMRegressor(n_estimators=9, num_leaves=4, verbose=-1)),
    ("regression", RandomForestRegressor(n_estimators=6, max_features=0.3, random_state=5)),
]


@pytest.mark.parametrize("task, estimator", ESTIMATORS, ids=[type(e).__name__ for _, e in ESTIMATORS])
def test_generated_script_builds_the_same_model(task, estimator, tmp_path, monkeypatch):
    script, files = generate(task, estimator)
    model, namespace = rebuilt(script, tmp_path, monkeypatch)

    # the same estimator with the same learned-behaviour parameters, and the same featurization
    rebuilt_estimator = model.named_steps["model"]
    assert type(rebuilt_estimator) is type(estimator)
    original = estimator.get_params()
    for name, value in rebuilt_estimator.get_params().items():
        if name not in ("n_jobs", "callbacks"):
            assert value == original[name] or (value != value and original[name] != original[name]), name
    assert namespace["FEATURE_COLUMNS"] == ["age", "glucose", "smoker"]
    featurizer = model.named_steps["featurize"]
    assert [columns for _, _, columns in featurizer.transformers] == [["age", "glucose"], ["smoker"]]

    # each tuned hyperparameter is an option whose default is the value AutoML chose
    for name, value in codegen.hyperparameters(estimator).items():
        assert f"'--{name}'" in script and getattr(namespace["parse_args"](), name) == value
    assert "scikit-learn==" in files[ENVIRONMENT_FILE] and "mlflow==" in files[ENVIRONMENT_FILE]


def test_an_option_on_the_command_line_changes_the_model(tmp_path, monkeypatch):
    script, files = generate("classification", LGBMClassifier(n_estimators=7, learning_rate=0.07, verbose=-1))
    model, _ = rebuilt(script, tmp_path, monkeypatch, "--n_estimators", "50", "--learning_rate", "0.2")
    assert model.named_steps["model"].n_estimators == 50 and model.named_steps["model"].learning_rate == 0.2
    assert "lightgbm==" in files[ENVIRONMENT_FILE]


def test_the_script_carries_the_jobs_settings_and_metric_code(tmp_path, monkeypatch):
    script, _ = generate("classification", LogisticRegression(C=2.0), n_cross_validations=None, validation_data_size=0.25)
    _, namespace = rebuilt(script, tmp_path, monkeypatch)
    assert (namespace["TARGET_COLUMN"], namespace["PRIMARY_METRIC"], namespace["TEST_DATA_SIZE"]) == ("label", "AUC_weighted", 0.2)
    assert namespace["N_CROSS_VALIDATIONS"] is None and namespace["VALIDATION_DATA_SIZE"] == 0.25
    perfect = namespace["classification_metrics"]([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]), 2)
    assert perfect["AUC_weighted"] == 1.0 and perfect["accuracy"] == 1.0


def test_xgboost_learns_class_indices_when_labels_are_not_indices(tmp_path, monkeypatch):
    script, _ = generate("classification", XGBClassifier(n_estimators=3, verbosity=0))
    _, namespace = rebuilt(script, tmp_path, monkeypatch)
    assert list(namespace["fit_labels"](pd.Series(["well", "sick"]), np.array(["sick", "well"]))) == [1, 0]


def test_no_script_for_an_ensemble():
    ensemble = StackingClassifier([("lr", LogisticRegression()), ("knn", KNeighborsClassifier())])
    with pytest.raises(codegen.CodeGenerationError, match="ensemble"):
        generate("classification", ensemble)
