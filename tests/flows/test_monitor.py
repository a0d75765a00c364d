"""The ``monitor`` flow on localml: drifted data emits the drift event to the Prefect server, data that has
not drifted emits nothing, and data that does not match the reference is refused."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect.artifacts import Artifact

from flows.monitor import MonitorParameters, monitor
from tasks.events import DRIFT_EVENT
from tasks.workspace import get_client
from tests.conftest import REPO
from tests.events import stored_events

DIABETES = REPO / "examples" / "data" / "diabetes"


def write_version(folder, frame: pd.DataFrame):
    folder.mkdir(parents=True)
    frame.to_csv(folder / "diabetes.csv", index=False)
    (folder / "MLTable").write_text((DIABETES / "MLTable").read_text())
    return str(folder)


@pytest.fixture
def versions(workspace_root, tmp_path):
    """diabetes:1 (the model's training data), :2 PlasmaGlucose shifted, :3 a resample, :4 without BMI; a model tagged with :1."""
    from azure.ai.ml.entities import Data, Model

    client = get_client("local")
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    copies = [
        str(DIABETES),
        write_version(tmp_path / "shifted", frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40)),
        write_version(tmp_path / "resampled", frame.sample(frac=0.5, random_state=1)),
        write_version(tmp_path / "no-bmi", frame.drop(columns="BMI")),
    ]
    for path in copies:
        client.data.create_or_update(Data(name="diabetes", path=path, type="mltable"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_text("w")
    client.models.create_or_update(Model(name="diabetes-baseline", path=str(tmp_path / "model"), type="custom_model", tags={"data": "azureml:diabetes:1"}))
    return client


def drift_events(reference: str, since, timeout: float = 30.0) -> list:
    """The drift events about the data version ``reference`` stored since ``since``."""
    return stored_events(DRIFT_EVENT, {"amlflows.data.reference": reference}, since, timeout)


def test_drifted_data_emits_the_event_with_its_data_version_and_figures(versions, started):
    result = monitor(MonitorParameters(data="azureml:diabetes:2"))
    assert result.drift_detected and result.drifted_features == ["PlasmaGlucose"] and result.event_id
    assert result.reference == "azureml:diabetes:1" and result.model == "azureml:diabetes-baseline:1"

    (event,) = drift_events("azureml:diabetes:2", started)
    assert str(event.id) == result.event_id and event.resource.id == "azureml.data.diabetes"
    assert event.resource["amlflows.workspace"] == "local"
    assert event.payload["drift_share"] == pytest.approx(1 / 8) and list(event.payload["drifted_features"]) == ["PlasmaGlucose"]
    assert event.payload["model"] == "azureml:diabetes-baseline:1"
    assert [r.id for r in event.related if r.role == "model"] == ["azureml.model.diabetes-baseline"]
    assert "PlasmaGlucose | kolmogorov_smirnov" in Artifact.get("drift-report").data
    assert Artifact.get("drift-chart").data.startswith("data:image/png;base64,")


def test_data_that_has_not_drifted_emits_nothing(versions, started):
    result = monitor(MonitorParameters(data="azureml:diabetes:3"))
    assert not result.drift_detected and result.drifted_features == [] and result.event_id is None
    assert drift_events("azureml:diabetes:3", started, timeout=3) == []
    assert "no drift to act on" in Artifact.get("drift-report").data


def test_data_that_does_not_match_the_reference_and_unknown_data_are_refused(versions, started):
    with pytest.raises(ValueError, match=r"columns do not match the reference's: missing \['BMI'\]"):
        monitor(MonitorParameters(data="azureml:diabetes:4"))
    with pytest.raises(ValueError, match="Data asset azureml:diabetes-new@latest is not registered"):
        monitor(MonitorParameters(data="azureml:diabetes-new@latest"))
    assert drift_events("azureml:diabetes:4", started, timeout=2) == []
