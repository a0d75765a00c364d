"""The ``rai_review`` flow on localml: the baseline model's full review and verdict, a weak model failing the
gate, and bad input refused before the review pipeline starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from prefect.artifacts import Artifact
from pydantic import ValidationError
from tests.amlkit.test_rai_insights import RAI_DATA, TARGET, save_model

from amlkit.rai.dashboard import SECTIONS
from flows.rai_review import RAIReviewParameters, rai_review
from tasks.rai import ReviewData, ScorecardThresholds, judge_model
from tasks.workspace import get_client

WEAK_FEATURES = ["Pregnancies", "Age"]


def params(output: Path, **overrides) -> RAIReviewParameters:
    values = dict(
        train_data=str(RAI_DATA / "train"), test_data=str(RAI_DATA / "test"), compute="local", max_test_rows=600,
        total_counterfactuals=2, output_folder=str(output),
    )
    return RAIReviewParameters(**{**values, **overrides})


def test_the_baseline_model_gets_every_section_a_verdict_tags_and_a_dashboard(baseline_workspace, tmp_path):
    model = baseline_workspace.result.model
    # the quick baseline errs in a cohort of young patients, so the worst cohort's threshold is lenient here
    thresholds = ScorecardThresholds(primary_metric_threshold=0.9, max_worst_cohort_error_rate=0.9)
    result = rai_review(params(tmp_path, model=model, thresholds=thresholds))

    assert result.model == model and set(result.insights) == {"explanation", "error_analysis", "counterfactual", "causal", "fairness"}
    assert result.passed, result.reasons
    assert [c["key"] for c in result.checks] == ["AUC_weighted", "worst_cohort_error_rate", "accuracy_gap"]
    name, version = model.removeprefix("azureml:").split(":")
    tags = get_client("local").models.get(name, version=version).tags
    assert tags["rai_review"] == "passed" and tags["rai_review_job"] == result.job_name
    assert float(tags["rai_AUC_weighted"]) == pytest.approx(result.checks[0]["value"], abs=1e-4)
    assert tags["algorithm"] == "LightGBM", "the review's tags are added to the version's own"

    page = Path(result.dashboard).read_text()
    assert all(f"id='{section}'" in page for section in SECTIONS) and "Not computed in this review" not in page
    assert "Scorecard: PASS" in page
    insights = json.loads((Path(result.dashboard).parent / "rai_insights.json").read_text())
    assert insights["scorecard"]["passed"] and list(insights["causal"]["effects"]) == ["BMI"]
    report = Artifact.get("rai-review").data
    assert "passed" in report and result.job_name in report and Path(result.dashboard).resolve().as_uri() in report

    # on Azure the scorecard's numbers are computed by the flow from the model and the test rows: the same numbers
    judged = judge_model.fn("local", model, ReviewData(train=str(RAI_DATA / "train"), test=str(RAI_DATA / "test")),
                            TARGET, "classification", {"Age": [0, 30, 50, 120]}, max_test_rows=600)
    assert judged["overview"]["metrics"]["AUC_weighted"] == pytest.approx(insights["overview"]["metrics"]["AUC_weighted"])
    assert judged["error_analysis"]["worst_cohort"] == insights["error_analysis"]["worst_cohort"]
    assert judged["fairness"]["largest_gap"] == pytest.approx(insights["fairness"]["largest_gap"])


@pytest.fixture(scope="module")
def weak_files(tmp_path_factory):
    """A model trained on two features, and the RAI split cut to those features (made once)."""
    from sklearn.linear_model import LogisticRegression

    base = tmp_path_factory.mktemp("weak")
    folders = {}
    for split, file in (("train", "diabetes.csv"), ("test", "diabetes-test.csv")):
        folder = base / split
        shutil.copytree(RAI_DATA / split, folder)
        frame = pd.read_csv(folder / file)
        frame[WEAK_FEATURES + [TARGET]].to_csv(folder / file, index=False)
        folders[split] = str(folder)
    train = pd.read_csv(Path(folders["train"]) / "diabetes.csv")
    model = save_model(LogisticRegression().fit(train[WEAK_FEATURES], train[TARGET]), train[WEAK_FEATURES], base / "model")
    return model, folders


@pytest.fixture
def weak_model(workspace_root, weak_files):
    """The weak model registered in this test's workspace: its reference, and its data folders."""
    from azure.ai.ml.entities import Model

    path, folders = weak_files
    model = get_client("local").models.create_or_update(Model(name="diabetes-weak", path=path, type="mlflow_model"))
    return f"azureml:{model.name}:{model.version}", folders


@pytest.mark.slow
def test_a_weak_model_fails_the_gate_with_reasons_naming_the_thresholds(weak_model, tmp_path):
    model, data = weak_model
    result = rai_review(params(
        tmp_path, model=model, train_data=data["train"], test_data=data["test"], insights=["error_analysis"],
        data_name="diabetes-weak", cohort_features={"Age": [0, 30, 50, 120]},
    ))
    assert not result.passed and set(result.insights) == {"error_analysis", "fairness"}
    assert result.reasons[0].startswith("AUC_weighted is ") and "the threshold is >= 0.85" in result.reasons[0]
    assert any(r.startswith("error rate of the worst cohort") and ">= " not in r for r in result.reasons)
    tags = get_client("local").models.get("diabetes-weak", version="1").tags
    assert tags["rai_review"] == "failed" and "AUC_weighted" in tags["rai_review_reasons"]
    assert "FAIL" in Artifact.get("rai-review").data


@pytest.mark.parametrize("overrides, message", [
    ({"use_full_data": True}, "signature does not match the data: the model takes"),
    ({"target_column": "Outcome"}, "Target column 'Outcome' is missing from the training data"),
    ({"treatment_features": ["Smoker"]}, r"Treatment feature \['Smoker'\] is not a feature of the data"),
    ({"cohort_features": {"Sex": None}}, r"Cohort feature \['Sex'\] is not a feature of the data"),
])
def test_bad_input_fails_before_the_review_pipeline_starts(weak_model, tmp_path, overrides, message):
    model, data = weak_model
    values = {"model": model, "train_data": data["train"], "test_data": data["test"], "treatment_features": ["Age"]}
    if overrides.pop("use_full_data", False):
        values.update(train_data=str(RAI_DATA / "train"), test_data=str(RAI_DATA / "test"))
    with pytest.raises(ValueError, match=message):
        rai_review(params(tmp_path, **{**values, **overrides}))
    ml_client = get_client("local")
    assert list(ml_client.jobs.list()) == [] and list(ml_client.data.list()) == []
    assert "rai_review" not in ml_client.models.get("diabetes-weak", version="1").tags


def test_a_missing_target_in_the_test_data_and_an_unknown_model_are_named(weak_model, tmp_path):
    model, data = weak_model
    test = shutil.copytree(data["test"], tmp_path / "test")
    pd.read_csv(test / "diabetes-test.csv").drop(columns=TARGET).to_csv(test / "diabetes-test.csv", index=False)
    with pytest.raises(ValueError, match=f"Target column '{TARGET}' is missing from the test data"):
        rai_review(params(tmp_path, model=model, train_data=data["train"], test_data=str(test), treatment_features=["Age"]))
    with pytest.raises(ValueError, match="Model azureml:diabetes-nope@latest is not registered"):
        rai_review(params(tmp_path, model="azureml:diabetes-nope@latest"))
    assert list(get_client("local").jobs.list()) == []


def test_parameters_are_checked_when_they_are_built(tmp_path):
    with pytest.raises(ValidationError, match="'AUC' is not a classification metric"):
        params(tmp_path, thresholds=ScorecardThresholds(primary_metric="AUC", primary_metric_threshold=0.8))
    with pytest.raises(ValidationError, match="max_fairness_gap needs cohort_features"):
        params(tmp_path, cohort_features={})
    with pytest.raises(ValidationError, match="causal analysis needs treatment_features"):
        params(tmp_path, treatment_features=[])
    with pytest.raises(ValidationError, match="max_worst_cohort_error_rate needs the error_analysis insight"):
        params(tmp_path, insights=["explanation"])
