"""The repository's ``prefect.yaml`` as `amlflows up` deploys it (``prefect deploy --all``): every flow's deployment
on the process pool, the schedules, the trigger that runs ``retrain`` on the drift event, and that trigger firing
through the stack's worker."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from amlflows.cli import FLOWS as PARAMETERS
from amlflows.stack import POOL
from tests.e2e.conftest import prefect_client, wait_for_final_state

pytestmark = pytest.mark.e2e

FLOWS = tuple(PARAMETERS)


def test_every_flow_is_deployed_to_the_process_pool_with_its_schedules(stack):
    with prefect_client(stack) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert {name: deployments[name].work_pool_name for name in FLOWS} == dict.fromkeys(FLOWS, POOL)
        monitor, retrain = deployments["monitor"], deployments["retrain"]
        assert [(s.schedule.cron, s.active) for s in monitor.schedules] == [("0 * * * *", True)]
        assert [(s.schedule.cron, s.active) for s in retrain.schedules] == [("0 2 * * *", False)]
        assert retrain.schedules[0].parameters == {"params": {"reason": "schedule"}}
        assert all(not deployments[name].schedules for name in FLOWS if name not in ("monitor", "retrain"))


def test_each_deployment_s_form_opens_with_the_flow_s_defaults(stack):
    with prefect_client(stack) as client:
        for name in FLOWS:
            schema = client.read_deployment_by_name(f"{name}/{name}").parameter_openapi_schema
            _, model = PARAMETERS[name]
            assert schema["properties"]["params"]["default"] == model.defaults().model_dump(mode="json"), name


def test_the_drift_event_triggers_retrain_with_the_data_version(stack):
    with prefect_client(stack) as client:
        retrain = client.read_deployment_by_name("retrain/retrain")
        automations = [a for a in client.read_automations() if any(
            getattr(action, "deployment_id", None) == retrain.id for action in a.actions
        )]
    (automation,) = automations
    assert automation.enabled and automation.trigger.expect == {"amlflows.data.drift-detected"}
    parameters = automation.actions[0].parameters["params"]
    assert parameters["data"] == "{{ event.resource['amlflows.data.reference'] }}" and parameters["reason"] == "event"


def triggered_by(client, deployment_id, workspace: str) -> list:
    """The runs of a deployment on the given workspace (other tests run the same deployments on theirs)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [run for run in runs if run.parameters["params"].get("workspace") == workspace]


def test_drift_to_a_promotion_decision_through_the_worker_and_the_trigger(stack, tmp_path):
    """monitor (run through the API, picked up by the worker) flags drifted data and emits the event; the trigger
    starts retrain on that data version; the worker runs it; the candidate's promotion decision is recorded."""
    from azure.ai.ml.entities import Data, Model
    from prefect.events.schemas.automations import AutomationCore

    from tasks.workspace import get_client as ml_client_of
    from tests.amlkit.test_rai_insights import RAI_DATA
    from tests.flows.test_monitor import DIABETES, write_version

    workspace = f"local:{tmp_path / 'localml'}"  # a workspace of the test's own, named in the runs' parameters
    client = ml_client_of(workspace)
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    drifted = write_version(tmp_path / "drifted", frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40))
    client.data.create_or_update(Data(name="diabetes", path=drifted, type="mltable"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_text("w")
    client.models.create_or_update(Model(name="diabetes-baseline", path=str(tmp_path / "model"), type="custom_model",
                                         tags={"data": "azureml:diabetes:1"}))

    with prefect_client(stack) as prefect:
        monitor = prefect.read_deployment_by_name("monitor/monitor")
        retrain = prefect.read_deployment_by_name("retrain/retrain")
        # the trigger's own parameters, plus small budgets so the retraining takes a minute or two
        (automation,) = [a for a in prefect.read_automations() if a.actions[0].deployment_id == retrain.id]
        automation.actions[0].parameters["params"].update(
            compute="local", max_trials=2, allowed_algorithms=["LightGBM"], timeout_minutes=1, insights=["error_analysis"],
            review_train_data=str(RAI_DATA / "train"), review_test_data=str(RAI_DATA / "test"),
            thresholds={"primary_metric": "AUC_weighted", "primary_metric_threshold": 0.85, "max_fairness_gap": 0.15},
        )
        # (the client's update_automation sends owner_resource, which this server's update schema refuses)
        body = AutomationCore(**automation.model_dump(exclude={"id"})).model_dump(mode="json", exclude={"owner_resource"})
        prefect._client.put(f"/automations/{automation.id}", json=body).raise_for_status()

        run = prefect.create_flow_run_from_deployment(monitor.id, parameters={"params": {"workspace": workspace, "data": "azureml:diabetes:2"}})
        run = wait_for_final_state(prefect, run.id, 180, stack)
        assert run.state.is_completed(), f"monitor: {run.state.name}: {run.state.message}"

        deadline = time.monotonic() + 60
        while not (runs := triggered_by(prefect, retrain.id, workspace)):
            assert time.monotonic() < deadline, "the drift event did not start retrain"
            time.sleep(1)
        (triggered,) = runs
        params = triggered.parameters["params"]
        assert params["data"] == "azureml:diabetes:2" and params["workspace"] == workspace and params["reason"] == "event"
        assert list(params["event"]["drifted_features"]) == ["PlasmaGlucose"]
        triggered = wait_for_final_state(prefect, triggered.id, 600, stack)
        assert triggered.state.is_completed(), f"retrain: {triggered.state.name}: {triggered.state.message}"

    candidate = client.models.get("diabetes-baseline", version="2")
    assert candidate.tags["retrain_reason"] == "event" and candidate.tags["retrain_data"] == "azureml:diabetes:2"
    assert candidate.tags["retrain_decision"].startswith(("promoted", "not promoted"))
