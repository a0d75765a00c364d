"""The repository's ``prefect.yaml`` as `amlflows up` deploys it (``prefect deploy --all``): every flow's deployment
on the process pool, the schedules, the triggers that run ``retrain`` on the drift event and ``deploy`` on the
promotion event, and both firing through the stack's worker, from drifted data to the new model served."""

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


def automation_of(stack, name: str):
    """The one automation that runs deployment ``name``."""
    with prefect_client(stack) as client:
        deployment = client.read_deployment_by_name(f"{name}/{name}")
        automations = [a for a in client.read_automations() if any(
            getattr(action, "deployment_id", None) == deployment.id for action in a.actions
        )]
    (automation,) = automations
    return automation


def test_the_drift_event_triggers_retrain_with_the_data_version(stack):
    automation = automation_of(stack, "retrain")
    assert automation.enabled and automation.trigger.expect == {"amlflows.data.drift-detected"}
    parameters = automation.actions[0].parameters["params"]
    assert parameters["data"] == "{{ event.resource['amlflows.data.reference'] }}" and parameters["reason"] == "event"


def test_the_promotion_event_triggers_deploy_with_the_model_version(stack):
    automation = automation_of(stack, "deploy")
    assert automation.enabled and automation.trigger.expect == {"amlflows.model.promoted"}
    assert automation.trigger.match.model_dump().get("prefect.resource.id") == "azureml.model.*"
    parameters = automation.actions[0].parameters["params"]
    assert parameters == {"model": "{{ event.resource['amlflows.model.reference'] }}",
                          "workspace": "{{ event.resource['amlflows.workspace'] }}", "reason": "event"}


def triggered_by(client, deployment_id, workspace: str) -> list:
    """The runs of a deployment on the given workspace (other tests run the same deployments on theirs)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return [run for run in runs if run.parameters["params"].get("workspace") == workspace]


def the_one_triggered_run(client, deployment_id, workspace: str, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (runs := triggered_by(client, deployment_id, workspace)):
        assert time.monotonic() < deadline, what
        time.sleep(1)
    (run,) = runs
    return run


def give_trigger_parameters(client, deployment_id, **parameters) -> None:
    """Add ``parameters`` to those the deployment's trigger passes (small budgets, for a test); the rest stay as
    prefect.yaml has them."""
    from prefect.events.schemas.automations import AutomationCore

    (automation,) = [a for a in client.read_automations() if getattr(a.actions[0], "deployment_id", None) == deployment_id]
    automation.actions[0].parameters["params"].update(parameters)
    # (the client's update_automation sends owner_resource, which this server's update schema refuses)
    body = AutomationCore(**automation.model_dump(exclude={"id"})).model_dump(mode="json", exclude={"owner_resource"})
    client._client.put(f"/automations/{automation.id}", json=body).raise_for_status()


def end_unfinished_runs(client, deployment_id, workspace: str, stack) -> None:
    """Cancel the deployment's runs on ``workspace`` that are still going, and wait for them to end: a deploy run
    left going after a failed test could start serving processes after the test stopped its endpoints."""
    from prefect.states import Cancelled, Cancelling

    for run in triggered_by(client, deployment_id, workspace):
        if run.state is not None and not run.state.is_final():
            # a run the worker has started is stopped by it (Cancelling); one it has not, is simply Cancelled
            client.set_flow_run_state(run.id, Cancelling() if run.infrastructure_pid else Cancelled(), force=True)
            wait_for_final_state(client, run.id, 120, stack)


def test_drift_to_the_promoted_model_served_through_the_worker_and_the_triggers(stack, tmp_path):
    """monitor (run through the API, picked up by the worker) flags drifted data and emits the event; the trigger
    starts retrain on that data version; the worker runs it and it promotes the candidate; its promotion event
    triggers deploy with that model version, which the worker runs; the endpoint then answers a real request
    from the new version's deployment."""
    from azure.ai.ml.entities import Data, Model

    from tasks.workspace import get_client as ml_client_of
    from tests.amlkit.test_rai_insights import RAI_DATA
    from tests.e2e.conftest import delete_endpoints
    from tests.flows.test_monitor import DIABETES, write_version

    workspace = f"local:{tmp_path / 'localml'}"  # a workspace of the test's own, named in the runs' parameters
    client = ml_client_of(workspace)
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    drifted = write_version(tmp_path / "drifted", frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40))
    client.data.create_or_update(Data(name="diabetes", path=drifted, type="mltable"))
    # the model the monitor watches: its "data" tag names the reference data. It is not tagged champion, so
    # retrain finds no champion to beat and promotes a candidate that passes the review
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_text("w")
    client.models.create_or_update(Model(name="diabetes-baseline", path=str(tmp_path / "model"), type="custom_model",
                                         tags={"data": "azureml:diabetes:1"}))

    with prefect_client(stack) as prefect:
        monitor = prefect.read_deployment_by_name("monitor/monitor")
        retrain = prefect.read_deployment_by_name("retrain/retrain")
        deploy = prefect.read_deployment_by_name("deploy/deploy")
        # the triggers' own parameters, plus small budgets so the retraining takes a minute or two. The review's
        # gate asks only for an AUC better than chance: the promotion must not hang on a 2-trial search's luck
        give_trigger_parameters(
            prefect, retrain.id,
            compute="local", max_trials=2, allowed_algorithms=["LightGBM"], timeout_minutes=1, insights=["error_analysis"],
            review_train_data=str(RAI_DATA / "train"), review_test_data=str(RAI_DATA / "test"),
            thresholds={"primary_metric": "AUC_weighted", "primary_metric_threshold": 0.5,
                        "max_worst_cohort_error_rate": None, "max_fairness_gap": None},
        )
        # a first deployment has no windows to hold; a rollout, should there be one, holds seconds, not minutes
        give_trigger_parameters(prefect, deploy.id, plan={"smoke_rows": 5, "mirror_percent": 0, "steps": [100],
                                                          "hold_seconds": 2, "check_seconds": 0.5})
        try:
            run = prefect.create_flow_run_from_deployment(monitor.id, parameters={"params": {"workspace": workspace, "data": "azureml:diabetes:2"}})
            run = wait_for_final_state(prefect, run.id, 180, stack)
            assert run.state.is_completed(), f"monitor: {run.state.name}: {run.state.message}"

            triggered = the_one_triggered_run(prefect, retrain.id, workspace, "the drift event did not start retrain")
            params = triggered.parameters["params"]
            assert params["data"] == "azureml:diabetes:2" and params["workspace"] == workspace and params["reason"] == "event"
            assert list(params["event"]["drifted_features"]) == ["PlasmaGlucose"]
            triggered = wait_for_final_state(prefect, triggered.id, 600, stack)
            assert triggered.state.is_completed(), f"retrain: {triggered.state.name}: {triggered.state.message}"

            candidate = client.models.get("diabetes-baseline", version="2")
            assert candidate.tags["retrain_reason"] == "event" and candidate.tags["retrain_data"] == "azureml:diabetes:2"
            assert candidate.tags["retrain_decision"].startswith("promoted"), candidate.tags["retrain_decision"]
            assert candidate.tags["champion"] == "true"

            deploying = the_one_triggered_run(prefect, deploy.id, workspace, "the promotion event did not start deploy")
            params = deploying.parameters["params"]
            assert (params["model"], params["workspace"], params["reason"]) == ("azureml:diabetes-baseline:2", workspace, "event")
            deploying = wait_for_final_state(prefect, deploying.id, 300, stack)
            assert deploying.state.is_completed(), f"deploy: {deploying.state.name}: {deploying.state.message}"

            endpoint = client.online_endpoints.get("diabetes-ep")
            (serving,) = [name for name, share in endpoint.traffic.items() if share == 100]
            assert endpoint.tags[f"model.{serving}"] == "azureml:diabetes-baseline:2", endpoint.tags
            assert client.models.get("diabetes-baseline", version="2").tags["serving.deployment"] == serving
            answer, deployment = score(endpoint.scoring_uri, client.online_endpoints.get_keys("diabetes-ep").primary_key,
                                       pd.read_csv(RAI_DATA / "test" / "diabetes-test.csv").drop(columns="Diabetic").head(5))
            assert deployment == serving  # the router names the deployment that answered
            assert len(answer) == 5 and set(answer) <= {0, 1}, answer
        finally:
            end_unfinished_runs(prefect, deploy.id, workspace, stack)
            delete_endpoints(tmp_path / "localml")


def score(scoring_uri: str, key: str, rows: pd.DataFrame) -> tuple[list, str]:
    """A request as a user's application sends it: Azure's body, the endpoint's key; the predictions and the
    deployment that answered."""
    import json
    import urllib.error
    import urllib.request

    # pandas' split form keeps each column's type: whole numbers stay whole, as the model's signature wants them
    body = {"input_data": json.loads(rows.to_json(orient="split"))}
    request = urllib.request.Request(scoring_uri, data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read()), answer.headers["azureml-model-deployment"]
    except urllib.error.HTTPError as error:
        with error:  # it holds the connection
            pytest.fail(f"the endpoint answered {error.code}: {error.read()[:1000]!r}")
