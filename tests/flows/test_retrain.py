"""The ``retrain`` flow: a run that promotes emits ``amlflows.model.promoted`` naming the new champion, a run that
changes nothing emits nothing, and bad input is refused before anything trains, the champion staying. (The flow runs
end to end, from the drift event, in tests/e2e/test_deployments.py; the promotion rule and the champion tag are
tested in tests/tasks/test_promotion.py.)"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from prefect import flow
from prefect.artifacts import Artifact

from flows.retrain import RetrainParameters, retrain
from tasks.data import DataRef
from tasks.events import PROMOTION_EVENT, emit_promotion_event
from tasks.models import ModelRef
from tasks.rai import ScorecardThresholds
from tasks.workspace import get_client
from tests.amlkit.test_rai_insights import RAI_DATA, TARGET, save_model
from tests.events import stored_events
from tests.flows.test_monitor import DIABETES


def promotion_events(model: str, since, timeout: float = 30.0) -> list:
    """The promotion events naming the model version ``model`` stored since ``since``."""
    return stored_events(PROMOTION_EVENT, {"amlflows.model.reference": model}, since, timeout)


def assets(event) -> list[tuple[str, str, str]]:
    """(role, resource id, reference) of the event's related Azure ML assets (Prefect adds its flow run, flow, ...)."""
    return [(r.role, r.id, r.get("amlflows.model.reference") or r.get("amlflows.data.reference"))
            for r in event.related if r.id.startswith("azureml.")]


def test_the_promotion_event_names_the_new_champion_the_one_it_replaced_and_the_data(workspace_root, started):
    new, old = (ModelRef(name="churn-model", version=v, type="mlflow_model") for v in ("3", "2"))
    data = DataRef(name="churn", version="7", type="mltable")
    payload = {"model": new.reference, "previous_champion": old.reference, "reason": "event"}

    @flow(name="promote-churn-models")
    def promote() -> tuple[str | None, str | None]:
        first = emit_promotion_event("local:/srv/ws", ModelRef(name="churn-model", version="1", type="mlflow_model"), None, {})
        return emit_promotion_event("local:/srv/ws", new, old, payload, data), first

    event_id, first = promote()

    (event,) = promotion_events("azureml:churn-model:3", started)
    assert str(event.id) == event_id and event.event == "amlflows.model.promoted"
    assert dict(event.resource) == {
        "prefect.resource.id": "azureml.model.churn-model", "prefect.resource.name": "churn-model",
        "amlflows.model.reference": "azureml:churn-model:3", "amlflows.model.version": "3", "amlflows.workspace": "local:/srv/ws",
    }
    assert assets(event) == [
        ("previous-champion", "azureml.model.churn-model", "azureml:churn-model:2"), ("data", "azureml.data.churn", "azureml:churn:7"),
    ]
    assert event.payload == payload
    (event,) = promotion_events("azureml:churn-model:1", started)
    assert str(event.id) == first and assets(event) == [], "a first champion replaces none"


@pytest.mark.slow
def test_a_retrain_that_promotes_emits_the_event_and_a_rerun_that_changes_nothing_emits_none(workspace_root, tmp_path, started):
    """A weak champion (two features) is beaten by AutoML's candidate, which is promoted; the same run again finds
    its candidate is the champion already."""
    import pandas as pd
    from azure.ai.ml.entities import Data, Model
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    client = get_client("local")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    train = pd.read_csv(RAI_DATA / "train" / "diabetes.csv")
    X = train.drop(columns=TARGET)
    weak = Pipeline([("two", ColumnTransformer([("keep", "passthrough", ["Pregnancies", "Age"])])), ("fit", LogisticRegression())])
    path = save_model(weak.fit(X, train[TARGET]), X, tmp_path / "weak")
    client.models.create_or_update(Model(name="diabetes-baseline", path=path, type="mlflow_model", tags={"champion": "true"}))
    params = RetrainParameters(
        compute="local", max_trials=2, allowed_algorithms=["LightGBM"], timeout_minutes=1, insights=["error_analysis"],
        review_train_data=str(RAI_DATA / "train"), review_test_data=str(RAI_DATA / "test"),
        # the quick candidate errs in a cohort of young patients: the gate here is the primary metric
        thresholds=ScorecardThresholds(max_worst_cohort_error_rate=None, max_fairness_gap=None),
    )

    result = retrain(params)
    assert result.promoted, result.decision
    assert (result.candidate, result.champion_before) == ("azureml:diabetes-baseline:2", "azureml:diabetes-baseline:1")
    (event,) = promotion_events("azureml:diabetes-baseline:2", started)
    assert str(event.id) == result.event_id
    assert dict(event.resource) == {
        "prefect.resource.id": "azureml.model.diabetes-baseline", "prefect.resource.name": "diabetes-baseline",
        "amlflows.model.reference": "azureml:diabetes-baseline:2", "amlflows.model.version": "2", "amlflows.workspace": "local",
    }
    assert assets(event) == [
        ("previous-champion", "azureml.model.diabetes-baseline", "azureml:diabetes-baseline:1"),
        ("data", "azureml.data.diabetes", "azureml:diabetes:1"),
    ]
    assert event.payload == {
        "model": "azureml:diabetes-baseline:2", "previous_champion": "azureml:diabetes-baseline:1", "reason": "manual",
        "decision": result.decision, "metric": "AUC_weighted", "candidate_score": result.candidate_score,
        "champion_score": result.champion_score,
    }
    assert result.candidate_score > result.champion_score
    assert f"**Promotion event:** `{result.event_id}`" in Artifact.get("retrain-decision").data

    rerun_started = datetime.now(timezone.utc)
    rerun = retrain(params)
    assert not rerun.promoted and rerun.decision.startswith("unchanged") and rerun.event_id is None
    assert promotion_events("azureml:diabetes-baseline:2", rerun_started, timeout=3) == []
    assert "Promotion event" not in Artifact.get("retrain-decision").data


def test_an_unknown_data_version_is_refused_and_the_champion_stays(workspace_root, tmp_path):
    from azure.ai.ml.entities import Data, Model

    client = get_client("local")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_text("w")
    client.models.create_or_update(Model(name="diabetes-baseline", path=str(tmp_path / "model"), type="custom_model", tags={"champion": "true"}))

    for data in ("azureml:diabetes:9", "azureml:diabetes-new@latest"):
        with pytest.raises(ValueError, match=f"Data asset {data} is not registered"):
            retrain(RetrainParameters(data=data, compute="local"))
    assert list(client.jobs.list()) == []
    assert [(m.version, m.tags) for m in client.models.list(name="diabetes-baseline")] == [("1", {"champion": "true"})]


def test_parameters_that_cannot_compare_candidates_are_refused_when_built():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="primary_metric_threshold is empty"):
        RetrainParameters(thresholds=ScorecardThresholds(primary_metric_threshold=None))
    with pytest.raises(ValidationError, match="'AUC' is not a classification metric"):
        RetrainParameters(thresholds=ScorecardThresholds(primary_metric="AUC"))
