"""The repository's ``prefect.yaml`` deployed with ``prefect deploy --all`` to a real (temporary) Prefect server:
every flow's deployment, the schedules, and the trigger that runs ``retrain`` on the drift event."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FLOWS = ("baseline", "train", "tune", "refine", "rai_review", "monitor", "retrain")
POOL = "amlflows-local"


def prefect_cli(*args: str) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_CLI_PROMPT": "false"}
    command = [str(Path(sys.executable).parent / "prefect"), *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def deployed(prefect_server):
    prefect_cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_cli("--no-prompt", "deploy", "--all")
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def test_every_flow_is_deployed_to_the_process_pool_with_its_schedules(deployed):
    from prefect.client.orchestration import get_client

    assert sorted(d["name"] for d in deployed["deployments"]) == sorted(FLOWS)
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert {name: deployments[name].work_pool_name for name in FLOWS} == dict.fromkeys(FLOWS, POOL)
        monitor, retrain = deployments["monitor"], deployments["retrain"]
        assert [(s.schedule.cron, s.active) for s in monitor.schedules] == [("0 * * * *", True)]
        assert [(s.schedule.cron, s.active) for s in retrain.schedules] == [("0 2 * * *", False)]
        assert retrain.schedules[0].parameters == {"params": {"reason": "schedule"}}
        assert all(not deployments[name].schedules for name in FLOWS if name not in ("monitor", "retrain"))


def test_each_deployment_s_form_opens_with_the_flow_s_defaults(deployed):
    from prefect.client.orchestration import get_client

    from amlflows.cli import FLOWS as PARAMETERS

    with get_client(sync_client=True) as client:
        for name in FLOWS:
            schema = client.read_deployment_by_name(f"{name}/{name}").parameter_openapi_schema
            _, model = PARAMETERS[name]
            assert schema["properties"]["params"]["default"] == model.defaults().model_dump(mode="json"), name


def test_the_drift_event_triggers_retrain_with_the_data_version(deployed):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name("retrain/retrain")
        automations = [a for a in client.read_automations() if any(
            getattr(action, "deployment_id", None) == retrain.id for action in a.actions
        )]
    (automation,) = automations
    assert automation.enabled and automation.trigger.expect == {"amlflows.data.drift-detected"}
    parameters = automation.actions[0].parameters["params"]
    assert parameters["data"] == "{{ event.resource['amlflows.data.reference'] }}" and parameters["reason"] == "event"


@pytest.fixture
def worker(deployed, tmp_path):
    """A real process worker on the pool, started from the repository root; stopped after the test."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield tmp_path / "worker.log"
    os.killpg(process.pid, 15)
    process.wait(timeout=60)


def wait_for_flow_run(client, run_id, timeout: float, log: Path):
    import time

    deadline = time.monotonic() + timeout
    while (run := client.read_flow_run(run_id)).state is None or not run.state.is_final():
        assert time.monotonic() < deadline, f"flow run {run.name} still {run.state}; worker log:\n{log.read_text()[-3000:]}"
        time.sleep(1)
    assert run.state.is_completed(), f"flow run {run.name} ended {run.state}; worker log:\n{log.read_text()[-3000:]}"
    return run


@pytest.mark.e2e
def test_drift_to_a_promotion_decision_through_the_worker_and_the_trigger(worker, workspace_root, tmp_path):
    """monitor (run through the API, picked up by the worker) flags drifted data and emits the event; the trigger
    starts retrain on that data version; the worker runs it; the candidate's promotion decision is recorded."""
    from azure.ai.ml.entities import Data, Model
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events.schemas.automations import AutomationCore

    from tests.flows.test_monitor import DIABETES, write_version
    from tests.localml.test_rai_insights import RAI_DATA
    import pandas as pd

    from tasks.workspace import get_client as ml_client_of

    workspace = f"local:{workspace_root}"
    client = ml_client_of(workspace)
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    drifted = write_version(tmp_path / "drifted", frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40))
    client.data.create_or_update(Data(name="diabetes", path=drifted, type="mltable"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_text("w")
    client.models.create_or_update(Model(name="diabetes-baseline", path=str(tmp_path / "model"), type="custom_model",
                                         tags={"data": "azureml:diabetes:1"}))

    with get_client(sync_client=True) as prefect:
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
        wait_for_flow_run(prefect, run.id, 180, worker)

        import time

        deadline = time.monotonic() + 60
        while not (runs := prefect.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retrain.id])))):
            assert time.monotonic() < deadline, "the drift event did not start retrain"
            time.sleep(1)
        (triggered,) = runs
        params = triggered.parameters["params"]
        assert params["data"] == "azureml:diabetes:2" and params["workspace"] == workspace and params["reason"] == "event"
        assert list(params["event"]["drifted_features"]) == ["PlasmaGlucose"]
        wait_for_flow_run(prefect, triggered.id, 600, worker)

    candidate = client.models.get("diabetes-baseline", version="2")
    assert candidate.tags["retrain_reason"] == "event" and candidate.tags["retrain_data"] == "azureml:diabetes:2"
    assert candidate.tags["retrain_decision"].startswith(("promoted", "not promoted"))
