"""The ``deploy`` flow's optional approval, as a person meets it: with ``require_approval`` the rollout pauses
after the smoke test and the mirror step, before any live traffic moves; the pause's form (the RunInput schema and
description Prefect stores for the run, what the UI renders) shows the figures so far; resuming it with approve
finishes the rollout, a rejection or the timeout rolls it back.

The flow runs in a thread, as a worker's process would run it, while the test reads and resumes its run on the
Prefect test server, with a client thread sending live traffic throughout.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run
from prefect.input import keyset_from_paused_state, read_flow_run_input

from flows.deploy import deploy
from tasks.rollout import ROLLOUT_TAG, RolloutBreached
from tests.flows.conftest import _workspace
from tests.flows.test_deploy import ENDPOINT, Client, model_folder, params  # noqa: F401 (model_folder: a fixture)

#: How long the test waits for the rollout to reach its pause (deploying green, smoke test, mirror step).
PAUSE_WITHIN_SECONDS = 60


class Rollout(threading.Thread):
    """The rollout of version 2 with approval required, in a thread of its own; its flow run found by its name."""

    def __init__(self, **changes):
        super().__init__(daemon=True)
        self.run_name = f"approval-{uuid.uuid4().hex[:8]}"
        self.changes = changes
        self.result = self.error = None
        self.context = contextvars.copy_context()  # the test server's settings and the test's result storage

    def run(self):
        flow = deploy.with_options(flow_run_name=self.run_name)
        try:
            self.result = self.context.run(flow, params("azureml:diabetes-baseline:2", require_approval=True, **self.changes))
        except BaseException as error:  # noqa: BLE001 (the test asserts on it)
            self.error = error

    def flow_run(self, client=None):
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        if client is None:
            with get_client(sync_client=True) as client:
                return self.flow_run(client)
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[self.run_name])))
        return runs[0] if runs else None

    def paused(self):
        """The flow run once it is Paused; fails the test if it ends or does not pause in time."""
        deadline, run = time.monotonic() + PAUSE_WITHIN_SECONDS, None
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                run = self.flow_run(client)
                if run is not None and run.state is not None and run.state.is_paused():
                    return run
                if not self.is_alive():
                    pytest.fail(f"the rollout ended without pausing: {self.error or self.result}")
                time.sleep(0.5)
        pytest.fail(f"the rollout did not pause within {PAUSE_WITHIN_SECONDS} s: {run.state if run else 'no flow run'}")

    def outcome(self, timeout: float = 60):
        self.join(timeout)
        assert not self.is_alive(), f"the rollout still runs {timeout} s after the answer"
        return self.result, self.error


@pytest.fixture(scope="module")
def shared(prefect_server, model_folder, tmp_path_factory):
    """One workspace for the module, with two versions of ``diabetes-baseline`` (the same model): its endpoint is
    deployed once, not once per case; its endpoints stopped afterwards."""
    from azure.ai.ml.entities import Model

    from tasks.workspace import get_client as workspace_client

    base = tmp_path_factory.mktemp("approval")
    shared = SimpleNamespace(root=base / "localml", results=base / "prefect-results")
    with _workspace(shared):
        ml_client = workspace_client("local")
        for version in ("1", "2"):
            ml_client.models.create_or_update(Model(name="diabetes-baseline", version=version, path=str(model_folder), type="mlflow_model"))
        yield shared
        for endpoint in ml_client.online_endpoints.list():
            ml_client.online_endpoints.begin_delete(endpoint.name).result()


@pytest.fixture
def workspace(shared):
    """The shared workspace, with blue serving version 1: at once when the last case left it so (a rejected or
    timed-out rollout), else by the deploy flow itself."""
    from tasks.workspace import get_client as workspace_client

    with _workspace(shared):
        deploy(params())
        yield workspace_client("local")


@pytest.fixture
def rollout(workspace):
    """Start the rollout of version 2 with approval required, under steady traffic; the client's statuses are
    checked afterwards: nobody's request failed, whatever the answer."""
    client = Client(workspace)
    client.start()
    started = []

    def start(**changes) -> Rollout:
        started.append(Rollout(**changes))
        started[-1].start()
        return started[-1]

    yield start
    statuses = client.stop()
    for thread in started:
        thread.join(60)
    assert set(statuses) == {200} and sum(statuses.values()) > 20, statuses


def form(run) -> tuple[dict, str]:
    """The pause's form as the Prefect UI builds it: the RunInput's JSON schema and its markdown description."""
    keyset = keyset_from_paused_state(run.state)
    return read_flow_run_input(keyset["schema"], flow_run_id=run.id), read_flow_run_input(keyset["description"], flow_run_id=run.id)


@pytest.mark.slow  # (CI runs it) each pauses a rollout for a person's answer: 20-30 s; the e2e UI test approves one
def test_a_rejected_rollout_is_rolled_back_with_the_person_s_note_in_the_error(workspace, rollout):
    thread = rollout()
    run = thread.paused()
    resume_flow_run(run.id, run_input={"approve": False, "note": "not during the sales peak"})
    _, error = thread.outcome()
    assert isinstance(error, RolloutBreached), error
    assert "Rolled back at 'approval': green rejected: not during the sales peak" in str(error)
    _assert_rolled_back(workspace, thread)


@pytest.mark.slow
def test_a_rollout_nobody_approves_in_time_is_rolled_back(workspace, rollout):
    thread = rollout(approval_timeout_seconds=3)
    thread.paused()
    _, error = thread.outcome()
    assert isinstance(error, RolloutBreached), error
    assert "Rolled back at 'approval': green no approval within 3 s" in str(error)
    _assert_rolled_back(workspace, thread)


@pytest.mark.slow
def test_an_approved_rollout_pauses_with_the_smoke_test_and_mirror_figures_and_then_takes_all_traffic(workspace, rollout):
    thread = rollout()
    run = thread.paused()
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"blue": 100, "green": 0} and not endpoint.mirror_traffic, "no live traffic moved before the answer"

    schema, description = form(run)
    approve, note = schema["properties"]["approve"], schema["properties"]["note"]
    assert set(schema["properties"]) == {"approve", "note"} and approve["default"] is True
    assert approve["description"] == "Shift live traffic to the new deployment (off: roll back)" and note["description"]
    assert "Shift live traffic on diabetes-ep to the new deployment?" in description
    table = {tuple(cells[:2]): cells[2:] for line in description.splitlines() if line.startswith("| ")
             for cells in [[cell.strip() for cell in line.strip("|").split("|")]]}
    assert table.pop(("step", "deployment")) == ["requests", "failure rate", "p95", "verdict"]
    assert list(table) == [("smoke test", "green (new)"), ("mirror 50%", "green (new)"), ("mirror 50%", "blue (live)")]
    assert table["smoke test", "green (new)"] == ["", "", "", "passed: 10 rows answered as the model predicts them"]
    for deployment in ("green (new)", "blue (live)"):
        requests, failure_rate, p95, _ = table["mirror 50%", deployment]
        assert int(requests) >= 5 and failure_rate == "0.00%" and 0 < float(p95.removesuffix(" ms")) < 200, table
    assert table["mirror 50%", "green (new)"][3] == f"passed: {table['mirror 50%', 'green (new)'][0]} requests within the gate"
    assert "Approve: live traffic moves in steps of 50% -> 100%" in description

    resume_flow_run(run.id, run_input={"approve": True, "note": "figures look fine"})
    result, error = thread.outcome()
    assert error is None, error
    assert [step.step for step in result.steps] == ["smoke test", "mirror 50%", "approval", "traffic 50%", "traffic 100%"]
    assert result.steps[2].reason == "approved: figures look fine"
    assert (result.outcome, result.deployment, result.previous) == ("rolled out", "green", "blue")
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"green": 100} and ROLLOUT_TAG not in endpoint.tags
    assert thread.flow_run().state.is_completed()


def _assert_rolled_back(workspace, thread: Rollout) -> None:
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"blue": 100} and not endpoint.mirror_traffic
    assert [d.name for d in workspace.online_deployments.list(ENDPOINT)] == ["blue"]
    assert ROLLOUT_TAG not in endpoint.tags and endpoint.tags["model.blue"] == "azureml:diabetes-baseline:1"
    state = thread.flow_run().state
    assert state.is_failed() and "Rolled back at 'approval'" in state.message, state
