"""The ``retrain`` flow on localml: a first candidate becomes the champion, a candidate trained on drifted
data is promoted only if it passes the review and beats the champion, and an unknown data version changes nothing."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect.artifacts import Artifact

from flows.retrain import RetrainParameters, retrain
from localml.rai.scorecard import Thresholds
from tasks.workspace import get_client
from tests.flows.test_monitor import DIABETES, write_version
from tests.localml.test_rai_insights import RAI_DATA

# the quick baselines err in a cohort of young patients: the gate here checks AUC and fairness
THRESHOLDS = Thresholds(primary_metric="AUC_weighted", primary_metric_threshold=0.85, max_fairness_gap=0.15)


def quick(**overrides) -> RetrainParameters:
    values = dict(max_trials=2, allowed_algorithms=["LightGBM"], timeout_minutes=1, compute="local",
                  insights=["error_analysis"], thresholds=THRESHOLDS,
                  review_train_data=str(RAI_DATA / "train"), review_test_data=str(RAI_DATA / "test"))
    return RetrainParameters(**{**values, **overrides})


def champions(client) -> list[str]:
    return [m.version for m in client.models.list(name="diabetes-baseline") if (m.tags or {}).get("champion") == "true"]


def test_a_candidate_is_promoted_only_when_it_passes_and_beats_the_champion(workspace_root, tmp_path, monkeypatch):
    from azure.ai.ml.entities import Data

    monkeypatch.chdir(tmp_path)  # the reviews' dashboards are written under the working folder
    client = get_client("local")
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    drifted = write_version(tmp_path / "drifted", frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40))
    client.data.create_or_update(Data(name="diabetes", path=drifted, type="mltable"))

    first = retrain(quick(data="azureml:diabetes:1"))
    assert first.review_passed and first.promoted and first.champion_before is None
    assert first.champion_after == first.candidate == "azureml:diabetes-baseline:1" and champions(client) == ["1"]

    event = {"drift_share": 0.125, "drifted_features": {"PlasmaGlucose": {"psi": 3.1}}}
    second = retrain(quick(data="azureml:diabetes:2", reason="event", event=event))
    assert second.candidate == "azureml:diabetes-baseline:2" and second.champion_before == first.candidate
    assert second.champion_score == pytest.approx(first.candidate_score)  # the champion, scored on the same rows
    beats = second.candidate_score > second.champion_score
    assert second.promoted == (second.review_passed and beats), second.decision
    assert champions(client) == (["2"] if second.promoted else ["1"])
    tags = client.models.get("diabetes-baseline", version="2").tags
    assert tags["retrain_reason"] == "event" and "PlasmaGlucose" in tags["retrain_event"] and tags["retrain_decision"] == second.decision
    assert second.decision in Artifact.get("retrain-decision").data

    with pytest.raises(ValueError, match="Data asset azureml:diabetes:9 is not registered"):
        retrain(quick(data="azureml:diabetes:9"))
    assert champions(client) == (["2"] if second.promoted else ["1"])
    assert [m.version for m in client.models.list(name="diabetes-baseline")] == ["1", "2"]
