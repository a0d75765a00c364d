"""Bad input to the ``retrain`` flow: an unknown data version is refused before anything trains, and the
champion stays. (The flow runs end to end, from the drift event, in tests/e2e/test_deployments.py; the promotion rule
and the champion tag are tested in tests/tasks/test_promotion.py.)"""

from __future__ import annotations

import pytest

from flows.retrain import RetrainParameters, retrain
from tasks.workspace import get_client


def test_an_unknown_data_version_is_refused_and_the_champion_stays(workspace_root, tmp_path):
    from azure.ai.ml.entities import Data, Model

    from tests.flows.test_monitor import DIABETES

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

    from tasks.rai import ScorecardThresholds

    with pytest.raises(ValidationError, match="primary_metric_threshold is empty"):
        RetrainParameters(thresholds=ScorecardThresholds(primary_metric_threshold=None))
    with pytest.raises(ValidationError, match="'AUC' is not a classification metric"):
        RetrainParameters(thresholds=ScorecardThresholds(primary_metric="AUC"))
