"""``amlflows up`` stands up the whole local stack (its own Prefect server, not the test harness) and says what it
does; a second ``up`` duplicates nothing. (``amlflows down`` stopping it all is checked when the session's stack
is taken down, in ``conftest.py``.)"""

from __future__ import annotations

import urllib.request

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


def test_the_stack_serves_every_deployment_the_trigger_the_pool_and_the_mlflow_ui(stack):
    with prefect_client(stack) as client:
        assert sorted(d.name for d in client.read_deployments()) == sorted(FLOWS)
        assert len(client.read_automations()) == 1
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
        assert len(client.read_automations()) == 1
