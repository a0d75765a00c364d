"""The Responsible AI review's insights, computed in-process on the DP-100 RAI split with a real model."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from amlkit.errors import SpecError
from amlkit.rai.causal import causal_effects
from amlkit.rai.counterfactuals import counterfactuals
from amlkit.rai.dashboard import SECTIONS
from amlkit.rai.dashboard import write as write_dashboard
from amlkit.rai.error_analysis import analyze_errors
from amlkit.rai.explanation import explain
from amlkit.rai.fairness import fairness
from amlkit.rai.review import Review, build_review
from amlkit.rai.scorecard import Thresholds, scorecard
from tests.conftest import REPO

RAI_DATA = REPO / "examples" / "data" / "diabetes-rai"
TARGET = "Diabetic"


def save_model(model, X: pd.DataFrame, folder) -> str:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with warnings.catch_warnings():  # MLflow's hint that integer columns cannot hold missing values: these have none
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(X.head(), model.predict(X.head()))
    mlflow.sklearn.save_model(model, str(folder), serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE, signature=signature)
    return str(folder)


@pytest.fixture(scope="module")
def data():
    train = pd.read_csv(RAI_DATA / "train" / "diabetes.csv")
    test = pd.read_csv(RAI_DATA / "test" / "diabetes-test.csv").head(1500)
    return train, test


@pytest.fixture(scope="module")
def review(data, tmp_path_factory):
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = data
    X = train.drop(columns=TARGET)
    model = Pipeline([("scale", StandardScaler()), ("boost", LGBMClassifier(n_estimators=60, verbose=-1))]).fit(X, train[TARGET])
    path = save_model(model, X, tmp_path_factory.mktemp("rai") / "model")
    return build_review(path, train, test, TARGET, "classification")


def test_explanations_rank_every_feature_and_explain_rows(review):
    result = explain(review, rows=20)
    assert sorted(result["global_importance"]) == sorted(review.features)
    values = list(result["global_importance"].values())
    assert values == sorted(values, reverse=True) and values[0] > 0 and min(values) >= 0
    assert len(result["local_importance"]) == 20
    assert all(sorted(row) == sorted(review.features) for row in result["local_importance"].values())


def test_error_analysis_tree_accounts_for_every_error(review):
    result = analyze_errors(review, max_depth=3)
    predicted = review.model.predict(review.X_test)
    assert result["errors"] == int((predicted != review.y_test).sum())
    root, leaves = result["tree"][0], [n for n in result["tree"] if n["leaf"]]
    assert root["rows"] == len(review.test) and root["error_rate"] == pytest.approx(result["error_rate"])
    assert sum(n["rows"] for n in leaves) == root["rows"] and sum(n["errors"] for n in leaves) == root["errors"]
    assert sum(n["error_coverage"] for n in leaves) == pytest.approx(1.0)
    worst = result["worst_cohort"]
    assert worst["error_rate"] >= result["error_rate"] and " and " in worst["cohort"]
    heatmap = result["heatmap"]
    assert len(heatmap["features"]) == 2 and len(heatmap["error_rate"]) == len(heatmap["rows"])
    assert sum(map(sum, heatmap["counts"])) == len(review.test)


def test_counterfactuals_flip_the_prediction_within_their_bounds(review):
    result = counterfactuals(review, total_cfs=2, rows=3, time_budget_seconds=60)
    assert len(result["rows"]) == 3 and result["rows_not_explained_in_time"] == []
    for row in result["rows"]:
        assert 1 <= len(row["counterfactuals"]) <= 2
        for alternative in row["counterfactuals"]:
            assert alternative["changes"] and alternative["prediction"] != row["prediction"]
    out_of_time = counterfactuals(review, rows=3, time_budget_seconds=0)
    assert out_of_time["rows"] == [] and len(out_of_time["rows_not_explained_in_time"]) == 3


def test_causal_effect_is_found_with_its_interval():
    # a known effect: the outcome rises by 2 per unit of the treatment, whatever the control does
    rng = np.random.default_rng(0)
    control = rng.normal(size=1500)
    treatment = control + rng.normal(size=1500)
    frame = pd.DataFrame({"treatment": treatment, "control": control, "outcome": 2 * treatment + 3 * control + rng.normal(size=1500)})
    model = LinearRegression().fit(frame[["treatment", "control"]], frame["outcome"])
    review = Review(model=model, train=frame, test=frame, target="outcome", task="regression")
    effect = causal_effects(review, ["treatment"])["effects"]["treatment"]
    low, high = effect["interval"]
    # double machine learning with boosted nuisance models: near the truth, not exactly on it
    assert effect["average_effect"] == pytest.approx(2.0, abs=0.1)
    assert 1.8 < low < effect["average_effect"] < high < 2.2
    assert effect["kind"] == "per unit of treatment"


def test_fairness_by_age_band_reports_each_cohort_and_the_largest_gap(review):
    result = fairness(review, "Age", bins=[0, 30, 50, 120])
    assert sorted(result["cohorts"]) == ["(0, 30]", "(30, 50]", "(50, 120]"]
    assert sum(result["rows"].values()) == len(review.test)
    accuracies = [m["accuracy"] for m in result["cohorts"].values()]
    assert result["largest_gap"]["accuracy"] == pytest.approx(max(accuracies) - min(accuracies))
    # the older cohorts are diagnosed far more often: a large selection-rate gap
    assert result["largest_gap"]["selection_rate"] > 0.2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: causal_effects(r, ["Smoker"]), r"Treatment feature \['Smoker'\] is not a feature of the data"),
        (lambda r: fairness(r, "Sex"), r"Cohort feature \['Sex'\] is not a feature"),
        (lambda r: counterfactuals(r, features_to_vary=["Height"]), r"Feature to vary \['Height'\]"),
    ],
)
def test_unknown_features_are_named(review, call, message):
    with pytest.raises(SpecError, match=message):
        call(review)


def test_review_inputs_are_checked_before_any_insight(data, tmp_path, review):
    train, test = data
    with pytest.raises(SpecError, match="Target column 'Diabetic' is missing from the test data"):
        build_review(review.model_path, train, test.drop(columns=TARGET), TARGET, "classification")
    # a model trained on two features does not match data with eight
    from sklearn.linear_model import LogisticRegression

    two = train[["PlasmaGlucose", "Age"]]
    path = save_model(LogisticRegression().fit(two, train[TARGET]), two, tmp_path / "two")
    with pytest.raises(SpecError, match="the data has columns the model does not take"):
        build_review(path, train, test, TARGET, "classification")
    with pytest.raises(SpecError, match="Categorical column"):
        build_review(review.model_path, train, test, TARGET, "classification", categorical=["Smoker"])
    with pytest.raises(SpecError, match="task_type 'forecasting'"):
        build_review(review.model_path, train, test, TARGET, "forecasting")


def test_the_dashboard_renders_every_section_in_headless_chromium(review, tmp_path):
    insights = {
        "overview": {"metrics": {"accuracy": 0.95}, "rows": len(review.test), "target": TARGET, "task": "classification"},
        "explanation": explain(review, rows=5),
        "error_analysis": analyze_errors(review),
        "counterfactual": counterfactuals(review, total_cfs=1, rows=2),
        "causal": causal_effects(review, ["BMI"], max_rows=500),
        "fairness": fairness(review, "Age", bins=[0, 30, 50, 120]),
        "scorecard": {"passed": False, "checks": [{"name": "accuracy", "value": 0.95, "threshold": ">= 0.97", "passed": False}]},
    }
    page = write_dashboard(insights, "Review of <diabetes>", tmp_path / "dashboard.html")
    dom = rendered_dom(page, tmp_path)
    # every picture decoded and every section is on the page, with its content
    assert 'data-sections="6"' in dom
    images = re.search(r'data-images="(\d+)"', dom).group(1)
    assert int(images) == 4 and f'data-images-loaded="{images}"' in dom
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert "Review of &lt;diabetes&gt;" in dom and "Scorecard: FAIL" in dom
    assert html.escape(insights["error_analysis"]["worst_cohort"]["cohort"], quote=False) in dom
    assert "Not computed in this review" not in dom


def rendered_dom(page, tmp_path) -> str:
    """The page's DOM after a headless Chromium loaded it and ran its script."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed to check the dashboard renders: apt-get install chromium (.ci/run does)"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_scorecard_passes_a_good_model_and_names_each_threshold_a_weak_one_misses(review):
    from sklearn.metrics import accuracy_score

    insights = {
        "overview": {"metrics": {"accuracy": accuracy_score(review.y_test, review.model.predict(review.X_test))}},
        "error_analysis": analyze_errors(review),
        "fairness": fairness(review, "Age", bins=[0, 30, 50, 120]),
    }
    lenient = Thresholds(primary_metric_threshold=0.9, max_worst_cohort_error_rate=0.5, max_fairness_gap=0.1)
    verdict = scorecard(insights, lenient)
    assert verdict["passed"] and verdict["reasons"] == [] and len(verdict["checks"]) == 3

    strict = Thresholds(primary_metric_threshold=0.99, max_worst_cohort_error_rate=0.01, max_fairness_gap=0.001)
    verdict = scorecard(insights, strict)
    assert not verdict["passed"] and len(verdict["reasons"]) == 3
    assert verdict["reasons"][0].startswith("accuracy is 0.9") and "the threshold is >= 0.99" in verdict["reasons"][0]
    assert "error rate of the worst cohort" in verdict["reasons"][1] and "<= 0.01" in verdict["reasons"][1]
    assert "largest accuracy gap between Age cohorts" in verdict["reasons"][2]

    only_metric = scorecard(insights, Thresholds(primary_metric_threshold=0.5))
    assert only_metric["passed"] and [c["name"] for c in only_metric["checks"]] == ["accuracy"]
    with pytest.raises(ValueError, match="AUC_weighted, which the review did not measure"):
        scorecard(insights, Thresholds(primary_metric="AUC_weighted", primary_metric_threshold=0.5))
