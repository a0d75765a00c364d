"""Crashes: `amlflows run train` killed -9 at each phase of its job, then run again; a job's runner killed -9.

The flow process kills itself at an exact point: ``LOCALML_FAULTS=<operation>=killx1`` (or ``<operation>@after``)
sends it SIGKILL when it reaches that operation, once per workspace, as a crash or an OOM kill would. What the
crash leaves is then checked (its temporary Prefect server gone, no job left without a process), and a second
run of the same command must finish the work with one job and one version of everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

from flows.train import TrainParameters, train
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SLOW_SCRIPT = REPO / "tests" / "flows" / "scripts" / "slow_train.py"
QUICK = ["--hyperparameters", "max_iter=10"]
TERMINAL = ("Completed", "Failed", "Canceled")


def run_train(tmp_path, arguments: list[str], faults: str | None = None) -> subprocess.Popen:
    """`amlflows run train` as a user starts it: no PREFECT_API_URL, so it starts a temporary Prefect server."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "LOCALML_FAULTS")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_LOCAL_STORAGE_PATH=str(PREFECT_LOCAL_STORAGE_PATH.value()))
    if faults:
        env["LOCALML_FAULTS"] = faults
    return subprocess.Popen(
        [sys.executable, "-m", "amlflows.cli", "run", "train", *arguments], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def prefect_servers_of(prefect_home) -> list[psutil.Process]:
    """The temporary Prefect servers started with this PREFECT_HOME, whoever started them."""
    servers = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "prefect.server.api.server" in " ".join(process.info["cmdline"] or ()) and \
                    process.environ().get("PREFECT_HOME") == str(prefect_home):
                servers.append(process)
        except psutil.Error:  # ended meanwhile, or not ours to read
            continue
    return servers


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} after {timeout} s"
        time.sleep(0.3)
    return value


def assert_nothing_orphaned(ml_client, tmp_path) -> None:
    """No temporary Prefect server outlives the killed run, and every job has a process or has ended."""
    wait_until(lambda: not prefect_servers_of(tmp_path / "prefect-home"), 30, "the killed run's Prefect server still runs")
    for job in ml_client.jobs.list():
        row = ml_client._workspace.catalog.get_job(job.name)
        assert job.status in TERMINAL or (row["pid"] and psutil.pid_exists(row["pid"])), f"{job.name} is {job.status} with no process"


# where the flow dies: (the phase, the operation that kills it, the jobs the killed run leaves, did it submit the job)
PHASES = [
    ("before submit: the compute is created", "compute.begin_create_or_update@after", 0, False),
    ("before submit: the data is registered", "data.create_or_update@after", 0, False),
    ("mid-submit: the job is created, its reply never read", "jobs.create_or_update@after", 1, True),
    ("while registering: the model version is made, the flow dies", "models.create_or_update@after", 1, True),
]


@pytest.mark.parametrize("phase, operation, jobs_left, submitted", PHASES, ids=[p[1] for p in PHASES])
def test_a_flow_killed_at_each_phase_of_its_job_is_finished_by_a_rerun_with_one_of_everything(
    ml_client, tmp_path, phase, operation, jobs_left, submitted
):
    killed = run_train(tmp_path, QUICK, faults=f"{operation}=killx1")
    output, _ = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, f"the run was not killed at {operation}:\n{output}"
    assert ml_client._workspace.catalog.faults_raised(operation) == 1
    assert len(list(ml_client.jobs.list())) == jobs_left
    assert_nothing_orphaned(ml_client, tmp_path)

    result = train(TrainParameters(hyperparameters={"max_iter": 10}))
    assert result.status == "Completed"
    [job] = ml_client.jobs.list()
    assert job.name == result.job_name and job.status == "Completed"
    # a job the killed run submitted is re-attached, not trained again
    assert result.reused == submitted
    assert [m.version for m in ml_client.models.list(name="diabetes-classifier")] == ["1"]
    assert [d.version for d in ml_client.data.list(name="diabetes-csv")] == ["1"]
    assert len(list(ml_client.compute.list())) == 1


def test_a_killed_runner_fails_its_job_with_the_reason_and_a_rerun_completes(ml_client, tmp_path):
    arguments = ["--script", str(SLOW_SCRIPT), "--compute", "local", "--hyperparameters", "sleep_seconds=8"]
    run = run_train(tmp_path, arguments)
    try:
        job = wait_until(lambda: next((j for j in ml_client.jobs.list() if j.status == "Running"), None), 180, "no job ran")
        runner = ml_client._workspace.catalog.get_job(job.name)["pid"]
        os.killpg(runner, signal.SIGKILL)
        output, _ = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 1
    assert f"process (pid {runner}) ended" in output and "flow 'train' failed" in output
    assert ml_client.jobs.get(job.name).status == "Failed"

    # the same command again: the failed job is not re-attached, a new attempt of it runs
    result = train(TrainParameters(script=str(SLOW_SCRIPT), compute="local", hyperparameters={"sleep_seconds": 8}))
    assert result.status == "Completed" and result.job_name == f"{job.name}-2" and not result.reused
    assert sorted(j.status for j in ml_client.jobs.list()) == ["Completed", "Failed"]
