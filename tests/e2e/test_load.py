"""A load test of the local stack: 20 `train` runs submitted together through `amlflows up` with two workers,
five distinct specs repeated four times each. Every run completes, each spec trains once (the repeats re-attach
to its job), its model is registered once, and no log of the server, the workers or the runs shows a database error.

It runs on both databases `amlflows up` offers: SQLite, the default (where Prefect 3.8's own server, before the
stack began its transactions IMMEDIATE, crashed runs with "database is locked": amlflows/prefect_server.py), and
PostgreSQL (`--database postgresql`, the server teams run). Each case starts a stack of its own.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import prefect_client, running_stack

pytestmark = pytest.mark.e2e

SPECS = 5
REPEATS = 4
#: what a database in trouble writes: SQLite's lock, PostgreSQL's conflicts, and the 503 the server answers with
DATABASE_ERROR = re.compile(r"database is locked|OperationalError|IntegrityError|UniqueViolation|DeadlockDetected|"
                            r"503 Service Unavailable|InterfaceError", re.IGNORECASE)


def train_parameters(spec: int) -> dict:
    return {"params": {"hyperparameters": {"learning_rate": 0.1, "max_iter": 10 * (spec + 1)},
                       "experiment_name": "load-test"}}


def submit_together(client, deployment_id) -> list:
    """Every run created before any is picked up: the specs interleaved, as requests from many users arrive."""
    return [client.create_flow_run_from_deployment(deployment_id, parameters=train_parameters(spec))
            for _ in range(REPEATS) for spec in range(SPECS)]


def wait_for_all(client, runs, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        current = [client.read_flow_run(run.id) for run in runs]
        if all(run.state is not None and run.state.is_final() for run in current) or time.monotonic() > deadline:
            return current
        time.sleep(5)


def database_errors(started, client, runs) -> list[str]:
    """Lines that name a database error, in the stack's logs and in every run's own log."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    lines = [f"{path.name}: {line}" for path in sorted(started.stack.state.glob("*.log"))
             for line in path.read_text(errors="replace").splitlines()]
    runs_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id for run in runs]))
    offset = 0
    while page := client.read_logs(runs_filter, limit=200, offset=offset):  # the API's largest page
        lines += [f"run log: {log.message}" for log in page]
        offset += len(page)
    return [line[:300] for line in lines if DATABASE_ERROR.search(line)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_twenty_runs_at_once_through_two_workers_train_each_spec_once_with_no_database_error(database, tmp_path):
    from localml import LocalMLClient

    with running_stack(tmp_path, database=database, workers=2) as started, prefect_client(started.stack) as client:
        deployment = client.read_deployment_by_name("train/train")
        submitted = time.monotonic()
        runs = submit_together(client, deployment.id)
        ended = wait_for_all(client, runs, timeout=30 * 60)
        errors = database_errors(started, client, runs)
        completed = sum(run.state.is_completed() for run in ended)
        # for benchmarks/RESULTS.md (pytest -s shows it)
        print(f"\nload on {database}: {completed}/{len(runs)} runs completed in {time.monotonic() - submitted:.0f} s, "
              f"{len(errors)} database error lines")
        assert completed == len(runs), [f"{r.name}: {r.state.name} {r.state.message}" for r in ended if not r.state.is_completed()]
        assert errors == []

    workspace = LocalMLClient(started.stack.localml_root)
    jobs = [job for job in workspace.jobs.list() if job.experiment_name == "load-test"]
    assert len(jobs) == SPECS and {job.status for job in jobs} == {"Completed"}, [(job.name, job.status) for job in jobs]
    versions = list(workspace.models.list(name="diabetes-classifier"))
    assert len(versions) == SPECS, [(v.version, v.tags) for v in versions]
