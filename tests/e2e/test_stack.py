"""``amlflows up`` stands up the whole local stack (its own Prefect server, not the test harness), a second
``up`` duplicates nothing, and ``amlflows down`` stops it all."""

from __future__ import annotations

import urllib.request

import psutil
import pytest

from prefect.settings import PREFECT_API_URL, temporary_settings

from amlflows.stack import POOL, Stack, down, status, up
from tests.e2e.conftest import free_port
from tests.flows.test_deployments import FLOWS, REPO

pytestmark = pytest.mark.e2e


def test_up_twice_then_down(tmp_path, monkeypatch, capsys):
    from prefect.client.orchestration import get_client

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "my-prefect-home"))
    stack = Stack(prefect_port=free_port(), mlflow_port=free_port(), localml_root=tmp_path / "localml", state=tmp_path / "state")
    try:
        assert up(stack) == 0
        first = status(stack)
        assert all(first.values()), first
        assert up(stack) == 0  # idempotent: the same processes, the deployments updated in place
        assert status(stack) == first
        out = capsys.readouterr().out
        assert f"http://127.0.0.1:{stack.prefect_port}" in out and f"http://127.0.0.1:{stack.mlflow_port}" in out
        assert out.count("is already running") == 3 and "amlflows down" in out
        assert f"deploying {len(FLOWS)} flows from prefect.yaml" in out, "it says what it does in its quiet minute"
        assert (tmp_path / "my-prefect-home" / "prefect.db").is_file(), "the server keeps its database in the user's PREFECT_HOME"

        with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
            assert sorted(d.name for d in client.read_deployments()) == sorted(FLOWS)
            assert len(client.read_automations()) == 1
            assert [p.name for p in client.read_work_pools()] == [POOL]
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.mlflow_port}/health", timeout=10) as response:
            assert response.status == 200
    finally:
        assert down(stack) == 0
    assert status(stack) == dict.fromkeys(first, None)
    for pid in first.values():  # gone, or ended and waiting to be reaped by this test's process
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"{pid} still runs"
