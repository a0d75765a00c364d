"""submit_job and wait_for_job under pressure, on a real Prefect server and a real localml workspace: identical runs
submitting at once, a retried run, and a timed-out wait whose cancel never completes."""

import os
import signal
import sqlite3
import threading
import time
from contextlib import closing

import pytest
from azure.ai.ml import command
from prefect import flow
from prefect.runtime import flow_run

from tasks.jobs import CommandJobSpec, JobTimeoutError, SubmittedJob, submit_job, wait_for_job
from tests.concurrency import meet_at_the_catalog

ENV = "AzureML-sklearn-1.5@latest"
RUNS_AT_ONCE = 4


#: Flow runs start one by one through the Prefect server, seconds apart on a loaded machine: they wait here until
#: all have started, so the meeting at the catalog measures the submitters, not the server.
all_started = threading.Event()
starting = threading.Barrier(RUNS_AT_ONCE, action=all_started.set)


@flow
def submit_once_all_started(spec: CommandJobSpec):
    starting.wait(timeout=600)
    return submit_job("local", spec)


@flow
def wait_only(job_name: str, timeout_seconds: float, cancel_timeout_seconds: float):
    return wait_for_job("local", job_name, timeout_seconds=timeout_seconds, cancel_timeout_seconds=cancel_timeout_seconds)


def mlflow_run_ids(ml_client) -> list[str]:
    with closing(sqlite3.connect(ml_client._workspace.tracking.db_path)) as db:
        return [row[0] for row in db.execute("SELECT run_uuid FROM runs")]


def wait_for_status(ml_client, name: str, statuses: tuple[str, ...], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while (status := ml_client.jobs.get(name).status) not in statuses:
        assert time.monotonic() < deadline, f"job {name} still {status} after {timeout} s"
        time.sleep(0.2)
    return status


@pytest.fixture
def hello_code(tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    (code / "hello.py").write_text("print('hello')\n")
    return code


def test_identical_runs_at_once_get_one_job_and_all_but_its_submitter_reattach(ml_client, hello_code):
    spec = CommandJobSpec(code=str(hello_code), command="python hello.py", experiment_name="at-once")
    # the experiment exists already, as in a used workspace: a fresh MLflow store's own setup is not what this checks
    ml_client._workspace.tracking.experiment_id("at-once")
    # a flow run each, as `amlflows run train & amlflows run train & ...` would start
    # each call returns the flow's own result: a state read back from the server may have lost its data when
    # Prefect's SQLite was busy, which is the server's trouble, not the submitters'
    submitted = meet_at_the_catalog(
        ml_client._workspace.catalog.path,
        [lambda: submit_once_all_started(spec)] * RUNS_AT_ONCE,
        after=all_started,
    )
    assert all(isinstance(job, SubmittedJob) for job in submitted), submitted
    assert len({job.name for job in submitted}) == 1
    assert sorted(job.reused for job in submitted) == [False] + [True] * (RUNS_AT_ONCE - 1)
    [job] = ml_client.jobs.list()
    assert job.name == submitted[0].name
    assert mlflow_run_ids(ml_client) == [job.name]
    assert wait_for_status(ml_client, job.name, ("Completed", "Failed", "Canceled")) == "Completed"


@flow(retries=1, retry_delay_seconds=0)
def submit_with_refresh_then_fail_once(spec: CommandJobSpec):
    job = submit_job("local", spec, refresh=True)
    if flow_run.run_count == 1:
        raise RuntimeError("a failure after the submission: the flow run is retried")
    return job


def test_a_retried_flow_run_with_refresh_reattaches_to_the_job_it_submitted(ml_client, hello_code):
    spec = CommandJobSpec(code=str(hello_code), command="python hello.py", experiment_name="refresh-retry")
    state = submit_with_refresh_then_fail_once(spec, return_state=True)
    assert state.is_completed(), state.message
    job = state.result()
    assert not job.reused  # the job is this flow run's own, from its first try
    assert [j.name for j in ml_client.jobs.list()] == [job.name]
    assert wait_for_status(ml_client, job.name, ("Completed", "Failed", "Canceled")) == "Completed"


def test_a_timed_out_wait_whose_cancel_never_completes_returns_within_its_bound(ml_client, tmp_path):
    job = ml_client.jobs.create_or_update(command(command="sleep 120", environment=ENV, experiment_name="stuck"))
    wait_for_status(ml_client, job.name, ("Running",))
    runner = ml_client._workspace.catalog.get_job(job.name)["pid"]
    os.kill(runner, signal.SIGSTOP)  # a runner frozen: it cannot act on the cancel, which never completes
    # without a bound the wait would hang for good: the test lets the runner go after a minute, and fails on the time
    release = threading.Timer(60, os.kill, (runner, signal.SIGCONT))
    release.start()
    try:
        started = time.monotonic()
        state = wait_only(job.name, timeout_seconds=1, cancel_timeout_seconds=3, return_state=True)
        elapsed = time.monotonic() - started
    finally:
        release.cancel()
        os.kill(runner, signal.SIGCONT)
    assert state.is_failed()
    with pytest.raises(JobTimeoutError, match=rf"Job {job.name} was still Running after 1 s\..* still CancelRequested.*begin_cancel"):
        state.result()
    assert elapsed < 30, f"the wait took {elapsed:.0f} s"
    # let go, the runner handles the cancel it was sent
    assert wait_for_status(ml_client, job.name, ("Completed", "Failed", "Canceled")) == "Canceled"


def test_a_wait_retried_mid_job_shows_each_log_line_once_and_moves_one_progress_artifact(ml_client, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client as prefect_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    code = tmp_path / "src"
    code.mkdir()
    (code / "count.py").write_text("import time\nfor i in range(8):\n    print(f'count {i}', flush=True)\n    time.sleep(0.5)\n")
    job = ml_client.jobs.create_or_update(command(code=str(code), command="python count.py", environment=ENV, experiment_name="counting"))
    log = ml_client._workspace.job_dir(job.name) / "user_logs" / "std_log.txt"

    def cut_off_once_counting():  # two polls lost mid-job (the task retries twice), and a stream's reply lost
        deadline = time.monotonic() + 120
        while not (log.exists() and "count 1" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.environ["LOCALML_FAULTS"] = "jobs.get=503x2,jobs.stream@after=503x1"

    monkeypatch.setenv("LOCALML_FAULTS", "")  # so that the faults the watcher sets end with the test
    watcher = threading.Thread(target=cut_off_once_counting, daemon=True)
    watcher.start()
    state = wait_only(job.name, timeout_seconds=120, cancel_timeout_seconds=10, return_state=True)
    watcher.join()
    assert state.is_completed(), state.message
    catalog = ml_client._workspace.catalog
    assert catalog.faults_raised("jobs.get") == 2 and catalog.faults_raised("jobs.stream@after") == 1

    flow_run_id = state.state_details.flow_run_id
    with prefect_client(sync_client=True) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # logs reach the server in batches
            messages = [r.message for r in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
            if f"[{job.name}] count 7" in messages:
                break
            time.sleep(0.5)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert [m for m in messages if m.startswith(f"[{job.name}] count")] == [f"[{job.name}] count {i}" for i in range(8)]
    assert [m for m in messages if m == f"Job {job.name} is Running"] == [f"Job {job.name} is Running"]
    assert [a.data for a in artifacts if a.type == "progress"] == [100.0]
