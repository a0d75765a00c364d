"""``amlflows up`` stands up the whole local stack (its own Prefect server, not the test harness) and says what it
does; a second ``up`` duplicates nothing. (``amlflows down`` stopping it all is checked when the session's stack
is taken down, in ``conftest.py``.)"""

from __future__ import annotations

import json
import urllib.request

import psutil
import pytest

from amlflows.cli import FLOWS
from amlflows.stack import POOL, status, up
from tests.e2e.conftest import prefect_client

pytestmark = pytest.mark.e2e


def test_up_says_what_it_does_and_where_everything_is(stack, started_stack):
    up_output = started_stack.output
    assert f"http://127.0.0.1:{stack.prefect_port}" in up_output and f"http://127.0.0.1:{stack.mlflow_port}" in up_output
    assert f"deploying {len(FLOWS)} flows from prefect.yaml" in up_output, "it says what it does in its quiet minute"
    assert "amlflows down" in up_output
    home = started_stack.settings["PREFECT_HOME"]
    assert (home / "prefect.db").is_file(), "the server keeps its database in the user's PREFECT_HOME"


def triggered_deployments(client) -> list[str]:
    """The deployments the stack's automations run, one name per automation."""
    names = {d.id: d.name for d in client.read_deployments()}
    return sorted(names[action.deployment_id] for a in client.read_automations() for action in a.actions)


def test_the_stack_serves_every_deployment_the_triggers_the_pool_and_the_mlflow_ui(stack):
    with prefect_client(stack) as client:
        assert sorted(d.name for d in client.read_deployments()) == sorted(FLOWS)
        assert triggered_deployments(client) == ["deploy", "retrain"]  # the drift and the promotion triggers
        assert [p.name for p in client.read_work_pools()] == [POOL]
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.mlflow_port}/health", timeout=10) as response:
        assert response.status == 200


def test_a_second_up_keeps_the_running_processes_and_duplicates_nothing(stack, stack_environment, capsys):
    first = status(stack)
    assert all(first.values()), first
    assert up(stack) == 0
    assert status(stack) == first
    assert capsys.readouterr().out.count("is already running") == 3
    with prefect_client(stack) as client:
        assert sorted(d.name for d in client.read_deployments()) == sorted(FLOWS)
        assert triggered_deployments(client) == ["deploy", "retrain"]


def test_up_brings_back_an_endpoint_whose_serving_processes_died(stack, stack_environment, tmp_path, capsys):
    """As after a reboot: the endpoint's router and host are killed; the next ``up`` serves it again, same URI."""
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint, Model

    from localml import LocalMLClient

    client = LocalMLClient(stack.localml_root)
    client.begin_create_or_update(ManagedOnlineEndpoint(name="reboot-ep", auth_mode="key")).result()
    deployment = ManagedOnlineDeployment(name="blue", endpoint_name="reboot-ep", instance_count=1,
                                         model=Model(path=str(mlflow_model(tmp_path)), type="mlflow_model"))
    client.online_deployments.begin_create_or_update(deployment).result()
    endpoint = client.online_endpoints.get("reboot-ep")
    endpoint.traffic = {"blue": 100}
    client.begin_create_or_update(endpoint).result()
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"input_data": {"columns": ["x"], "index": [0, 1], "data": [[-2.0], [3.0]]}}))
    try:
        assert json.loads(client.online_endpoints.invoke("reboot-ep", request_file=str(request))) == [0, 1]
        serving = serving_processes(stack.localml_root / "endpoints" / "reboot-ep")
        assert len(serving) == 2, serving  # the router and the host
        for process in serving:
            process.kill()
        psutil.wait_procs(serving, timeout=10)

        assert up(stack) == 0
        assert "endpoints    reboot-ep" in capsys.readouterr().out
        assert serving_processes(stack.localml_root / "endpoints" / "reboot-ep"), "up started them again"
        assert client.online_endpoints.get("reboot-ep").scoring_uri == endpoint.scoring_uri
        assert json.loads(LocalMLClient(stack.localml_root).online_endpoints.invoke("reboot-ep", request_file=str(request))) == [0, 1]
    finally:
        client.online_endpoints.begin_delete(name="reboot-ep").result()
    assert serving_processes(stack.localml_root / "endpoints" / "reboot-ep") == []


def mlflow_model(folder):
    """A logistic regression of one column, as an MLflow model with its signature."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rows = pd.DataFrame({"x": np.linspace(-5.0, 5.0, 40)})
    model = LogisticRegression().fit(rows, (rows["x"] > 0).astype(int))
    path = folder / "model"
    mlflow.sklearn.save_model(model, str(path), serialization_format="cloudpickle", pip_requirements=["scikit-learn"],
                              signature=infer_signature(rows, model.predict(rows)))
    return path


def serving_processes(endpoint_folder) -> list[psutil.Process]:
    """The routers and hosts serving an endpoint: their command lines name a file in its folder."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            command = " ".join(process.info["cmdline"] or [])
            if str(endpoint_folder) in command and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            pass
    return found
