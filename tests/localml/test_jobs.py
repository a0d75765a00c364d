"""localml command jobs: real detached processes, a real MLflow store, real signals. No mocks."""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import psutil
import pytest
from azure.ai.ml import Input, Output, command
from azure.ai.ml.entities import AmlCompute
from azure.ai.ml.exceptions import JobException
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from localml import LocalMLClient
from localml.errors import LocalMLValidationError
from localml.operations.jobs import RUNNER_START_GRACE_SECONDS
from tests.concurrency import meet_at_the_catalog

ENV = "AzureML-sklearn-1.5@latest"
STATUS_ORDER = ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]
ACTIVE = {"Preparing", "Running", "Finalizing"}


def sleep_job(code_dir, state, seconds, **kwargs):
    return command(
        code=str(code_dir),
        command=f"python sleep.py --seconds {seconds} --state {shlex.quote(str(state))}",
        environment=ENV,
        **kwargs,
    )


def test_command_job_lifecycle(ml_client, code_dir, tmp_path, capsys):
    job = ml_client.jobs.create_or_update(
        command(
            code=str(code_dir),
            command="python metric.py --greeting ${{inputs.greeting}} --out ${{outputs.out}}",
            inputs={"greeting": "hi"},
            outputs={"out": Output(type="uri_folder")},
            environment=ENV,
            experiment_name="lifecycle",
            display_name="metric job",
        )
    )
    assert job.status in STATUS_ORDER[:2]
    assert job.experiment_name == "lifecycle"

    seen = [job.status]
    deadline = time.monotonic() + 120
    while seen[-1] not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, f"job still {seen[-1]} after 120 s"
        time.sleep(0.05)
        status = ml_client.jobs.get(job.name).status
        if status != seen[-1]:
            seen.append(status)
    assert seen[-1] == "Completed", seen
    assert "Running" in seen
    assert [STATUS_ORDER.index(s) for s in seen] == sorted(STATUS_ORDER.index(s) for s in seen), seen

    capsys.readouterr()
    ml_client.jobs.stream(job.name)
    streamed = capsys.readouterr().out
    assert "hi from the metric job" in streamed and "metric job done" in streamed
    assert f"RunId: {job.name}" in streamed and "Status: Completed" in streamed

    # the MLflow run of the job is named after it, and holds what the script logged
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=ml_client.mlflow_tracking_uri).get_run(job.name)
    assert run.data.metrics["answer"] == 42.0
    assert run.data.params["greeting"] == "hi"
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "metric job"
    finished = ml_client.jobs.get(job.name)
    assert run.info.experiment_id == finished.properties["mlflow.experiment_id"]
    assert finished.studio_url.endswith(f"/runs/{job.name}")
    assert [j.name for j in ml_client.jobs.list()] == [job.name]

    ml_client.jobs.download(job.name, download_path=tmp_path / "dl")
    artifacts = tmp_path / "dl" / "artifacts"
    log = (artifacts / "user_logs" / "std_log.txt").read_text()
    assert "hi from the metric job" in log and "metric job done" in log
    assert (artifacts / "outputs" / "result.txt").read_text() == "written to ./outputs"

    ml_client.jobs.download(job.name, download_path=tmp_path / "dl", output_name="out")
    assert (tmp_path / "dl" / "named-outputs" / "out" / "named.txt").read_text() == "written to the named output"
    with pytest.raises(ResourceNotFoundError, match="nope"):
        ml_client.jobs.download(job.name, download_path=tmp_path / "dl", output_name="nope")


def test_literal_and_uri_file_inputs_are_substituted(ml_client, code_dir, tmp_path):
    source = tmp_path / "in" / "notes.txt"
    source.parent.mkdir()
    source.write_text("original notes")
    job = ml_client.jobs.create_or_update(
        command(
            code=str(code_dir),
            command="python seen.py ${{inputs.words}} ${{inputs.count}} ${{inputs.notes}}",
            inputs={
                "words": "two words; echo injected",
                "count": 7,
                "notes": Input(type="uri_file", path=str(source)),
            },
            environment=ENV,
        )
    )
    # the job reads the copy taken at submission, not the file as it is later
    source.write_text("edited after submission")
    ml_client.jobs.stream(job.name)
    ml_client.jobs.download(job.name, download_path=tmp_path / "dl")
    seen = json.loads((tmp_path / "dl" / "artifacts" / "outputs" / "seen.json").read_text())
    # the literal reached the script as one argument: it was quoted, not run by the shell
    assert [item["arg"] for item in seen[:2]] == ["two words; echo injected", "7"]
    assert len(seen) == 3
    assert seen[2]["text"] == "original notes"
    assert seen[2]["arg"] != str(source)
    assert seen[2]["arg"].startswith(str(ml_client.root))


def test_code_snapshot_leaves_out_the_workspace_and_ignored_folders(ml_client, code_dir, tmp_path):
    # code="." in a project whose workspace root lives inside it, as with the default ./.localml
    project = tmp_path
    assert ml_client.root.parent == project
    for ignored in (".venv/lib/big.bin", ".git/HEAD", "__pycache__/x.pyc"):
        (project / ignored).parent.mkdir(parents=True, exist_ok=True)
        (project / ignored).write_text("ignored")
    (project / "notes.txt").write_text("kept")
    job = ml_client.jobs.create_or_update(command(code=str(project), command="python src/seen.py .", environment=ENV))
    ml_client.jobs.stream(job.name)
    ml_client.jobs.download(job.name, download_path=tmp_path / "dl")
    seen = json.loads((tmp_path / "dl" / "artifacts" / "outputs" / "seen.json").read_text())
    assert seen[0]["listing"] == ["logs", "notes.txt", "outputs", "src"]


def test_undeclared_placeholder_is_rejected_before_a_job_exists(ml_client, code_dir):
    for bad, declared in (("${{inputs.nope}}", "inputs"), ("${{outputs.nope}}", "outputs")):
        job = command(
            code=str(code_dir),
            command=f"python seen.py ${{{{inputs.data}}}} {bad}",
            inputs={"data": 1},
            environment=ENV,
        )
        with pytest.raises(LocalMLValidationError, match=rf"\$\{{\{{{declared}\.nope\}}\}}.*no {declared[:-1]} named 'nope'"):
            ml_client.jobs.create_or_update(job)
    assert list(ml_client.jobs.list()) == []
    assert not (ml_client.root / "jobs").exists()


def test_failing_script_fails_the_job_with_its_error(ml_client, code_dir, capsys):
    job = ml_client.jobs.create_or_update(command(code=str(code_dir), command="python fail.py", environment=ENV))
    with pytest.raises(JobException, match="ValueError: boom") as info:
        ml_client.jobs.stream(job.name)
    assert "status code 1" in str(info.value)
    out = capsys.readouterr().out
    assert "about to fail" in out and "Status: Failed" in out
    failed = ml_client.jobs.get(job.name)
    assert failed.status == "Failed"
    assert "ValueError: boom" in failed.properties["localml.error"]
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=ml_client.mlflow_tracking_uri).get_run(job.name).info.status == "FAILED"


def test_cancel_stops_a_running_job_and_its_process(ml_client, code_dir, tmp_path, helpers):
    state = tmp_path / "state.json"
    job = ml_client.jobs.create_or_update(sleep_job(code_dir, state, 300))
    pid = helpers.wait_for(lambda: helpers.read_state(state), what="the script to start")["pid"]
    assert ml_client.jobs.get(job.name).status == "Running"
    ml_client.jobs.begin_cancel(job.name).result(timeout=60)
    assert ml_client.jobs.get(job.name).status == "Canceled"
    helpers.wait_for(lambda: helpers.process_gone(pid), timeout=30, what=f"script pid {pid} to end")
    assert "end" not in helpers.read_state(state)
    ml_client.jobs.stream(job.name)  # a canceled job ends its stream without an error
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=ml_client.mlflow_tracking_uri).get_run(job.name).info.status == "KILLED"


def test_cancel_right_after_submission_ends_canceled(ml_client, code_dir, tmp_path, helpers):
    job = ml_client.jobs.create_or_update(sleep_job(code_dir, tmp_path / "state.json", 300))
    ml_client.jobs.begin_cancel(job.name).result(timeout=60)
    canceled = ml_client.jobs.get(job.name)
    assert canceled.status == "Canceled", canceled.properties["localml.error"]
    runner = ml_client._workspace.catalog.get_job(job.name)["pid"]
    helpers.wait_for(lambda: helpers.process_gone(runner), timeout=30, what="the runner to end")
    assert helpers.read_state(tmp_path / "state.json") is None
    assert ml_client.jobs.get(job.name).status == "Canceled"


def test_compute_runs_one_job_at_a_time_in_submission_order(ml_client, code_dir, tmp_path, helpers):
    ml_client.compute.begin_create_or_update(AmlCompute(name="one-node", max_instances=1)).result()
    catalog = ml_client._workspace.catalog
    first = ml_client.jobs.create_or_update(sleep_job(code_dir, tmp_path / "first.json", 3, compute="one-node"))
    # hold the first job's runner before it has queued, so the second job's runner is surely the quicker one
    first_runner = catalog.get_job(first.name)["pid"]
    os.kill(first_runner, signal.SIGSTOP)
    try:
        second = ml_client.jobs.create_or_update(sleep_job(code_dir, tmp_path / "second.json", 3, compute="one-node"))
        # wait until the second runner has made its first queueing decision, then give it time to overtake
        helpers.wait_for_status(ml_client, second.name, ("Queued", "Preparing", "Running", "Finalizing", "Completed"))
        time.sleep(1.5)  # the runner polls every 0.2 s
        assert ml_client.jobs.get(second.name).status == "Queued"
    finally:
        os.kill(first_runner, signal.SIGCONT)

    pairs = set()
    deadline = time.monotonic() + 120
    while True:
        pair = (ml_client.jobs.get(first.name).status, ml_client.jobs.get(second.name).status)
        pairs.add(pair)
        if all(s in ("Completed", "Failed", "Canceled") for s in pair):
            break
        assert time.monotonic() < deadline, f"jobs still {pair} after 120 s"
        time.sleep(0.05)
    assert pair == ("Completed", "Completed")
    assert ("Running", "Queued") in pairs, pairs
    assert not any(a in ACTIVE and b in ACTIVE for a, b in pairs), pairs
    a, b = helpers.read_state(tmp_path / "first.json"), helpers.read_state(tmp_path / "second.json")
    assert a["end"] <= b["start"], (a, b)
    rows = catalog.get_job(first.name), catalog.get_job(second.name)
    assert rows[0]["ended_at"] <= rows[1]["started_at"]


def test_a_job_stores_its_mlflow_run_without_loading_mlflow(ml_client, tmp_path, monkeypatch):
    # importing MLflow takes seconds, more than a small job: the runner keeps the run with plain SQL and file copies
    shadow = tmp_path / "shadow" / "mlflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the job runner loaded MLflow')\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "write.py").write_text("open('outputs/result.txt', 'w').write('kept')\nprint('wrote it')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))  # the runner (and the script) inherit it

    job = ml_client.jobs.create_or_update(command(code=str(code), command="python write.py", environment=ENV))
    ml_client.jobs.stream(job.name)

    from mlflow.tracking import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=ml_client.mlflow_tracking_uri)
    run = mlflow_client.get_run(job.name)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    stored = {a.path for a in mlflow_client.list_artifacts(job.name, "outputs")}
    assert stored == {"outputs/result.txt"}
    ml_client.jobs.download(job.name, download_path=tmp_path / "dl")
    assert (tmp_path / "dl" / "artifacts" / "outputs" / "result.txt").read_text() == "kept"
    assert "wrote it" in (tmp_path / "dl" / "artifacts" / "user_logs" / "std_log.txt").read_text()


def test_killed_runner_is_reported_failed(ml_client, code_dir, tmp_path, helpers, capsys):
    state = tmp_path / "state.json"
    job = ml_client.jobs.create_or_update(sleep_job(code_dir, state, 300))
    script_pid = helpers.wait_for(lambda: helpers.read_state(state), what="the script to start")["pid"]
    runner = ml_client._workspace.catalog.get_job(job.name)["pid"]
    assert os.getpgid(runner) == runner
    os.killpg(runner, signal.SIGKILL)
    helpers.wait_for(lambda: helpers.process_gone(runner), timeout=30, what="the runner to die")
    failed = ml_client.jobs.get(job.name)
    assert failed.status == "Failed"
    message = failed.properties["localml.error"]
    assert f"process (pid {runner}) ended" in message
    helpers.wait_for(lambda: helpers.process_gone(script_pid), timeout=30, what="the script to die")
    with pytest.raises(JobException, match="ended without reporting a final status"):
        ml_client.jobs.stream(job.name)
    assert [j.status for j in ml_client.jobs.list()] == ["Failed"]


def test_injected_faults_raise_like_azure_then_clear(ml_client, code_dir, monkeypatch):
    monkeypatch.setenv("LOCALML_FAULTS", "jobs.create_or_update@after=503x1,jobs.get=503x2")
    spec = command(name="faulty_job", code=str(code_dir), command="python seen.py", environment=ENV)
    with pytest.raises(HttpResponseError) as lost_reply:
        ml_client.jobs.create_or_update(spec)
    assert lost_reply.value.status_code == 503
    for _ in range(2):
        with pytest.raises(HttpResponseError) as info:
            ml_client.jobs.get("faulty_job")
        assert info.value.status_code == 503 and not isinstance(info.value, ResourceNotFoundError)
        assert "503" in str(info.value)
    # the reply was lost but the job was submitted; the fault counts live in the workspace, for every client
    assert ml_client.jobs.get("faulty_job").name == "faulty_job"
    assert LocalMLClient(ml_client.root).jobs.get("faulty_job").name == "faulty_job"
    ml_client.jobs.stream("faulty_job")
    assert ml_client.jobs.get("faulty_job").status == "Completed"
    with pytest.raises(ResourceExistsError, match="Job 'faulty_job' already exists.*jobs.get"):
        ml_client.jobs.create_or_update(command(name="faulty_job", code=str(code_dir), command="python seen.py", environment=ENV))


# -- concurrency and crashes: one job per name, and no job without a way out ------------------
def mlflow_runs(ml_client) -> dict[str, str]:
    """Each MLflow run of the workspace and its status, read with plain SQL."""
    with closing(sqlite3.connect(ml_client._workspace.tracking.db_path)) as db:
        return dict(db.execute("SELECT run_uuid, status FROM runs"))


def test_identical_submissions_at_once_make_one_job_and_the_others_get_a_conflict(ml_client, code_dir, helpers):
    # the experiment exists already, as in a used workspace: a fresh MLflow store's own setup is not what this checks
    ml_client._workspace.tracking.experiment_id("race")
    # a client each, as separate processes would have
    clients = [LocalMLClient(ml_client.root) for _ in range(4)]
    job = command(name="raced", code=str(code_dir), command="python seen.py", environment=ENV, experiment_name="race")
    outcomes = meet_at_the_catalog(
        ml_client._workspace.catalog.path, [functools.partial(client.jobs.create_or_update, job) for client in clients]
    )
    jobs = [o for o in outcomes if not isinstance(o, Exception)]
    conflicts = [o for o in outcomes if isinstance(o, ResourceExistsError)]
    assert len(jobs) == 1 and len(conflicts) == 3, outcomes
    assert all("Job 'raced' already exists" in str(c) and c.status_code == 409 for c in conflicts)
    assert [row["name"] for row in ml_client._workspace.catalog.list_jobs()] == ["raced"]
    assert list(mlflow_runs(ml_client)) == ["raced"]
    assert helpers.wait_for_status(ml_client, "raced") == "Completed"


def test_a_job_whose_mlflow_run_cannot_be_created_ends_failed_with_the_reason(ml_client, code_dir):
    # a run of the job's name left in the MLflow store (as the old submission race left them) blocks the job's own
    ml_client._workspace.tracking.create_run("blocked", "blocked", {}, experiment_name="crash")
    with pytest.raises(sqlite3.IntegrityError, match="runs.run_uuid"):
        ml_client.jobs.create_or_update(
            command(name="blocked", code=str(code_dir), command="python seen.py", environment=ENV, experiment_name="crash")
        )
    failed = ml_client.jobs.get("blocked")
    assert failed.status == "Failed"
    assert "could not start the job: IntegrityError" in failed.properties["localml.error"]
    assert ml_client._workspace.catalog.get_job("blocked")["pid"] is None  # no runner was started for it


def record_job_without_runner(ml_client, name: str) -> None:
    """What a submitter killed -9 between writing the job's row (and its MLflow run) and starting its runner leaves."""
    job = command(name=name, command="echo ran", environment=ENV, experiment_name="crash")._to_job()
    spec, record = ml_client.jobs._prepare(job)
    tracking = ml_client._workspace.tracking
    record["experiment_id"] = tracking.experiment_id("crash")
    assert ml_client._workspace.catalog.insert_job(name, "local", spec, record)
    tracking.create_run(name, name, {}, experiment_id=record["experiment_id"])


def test_a_job_whose_submitter_died_before_starting_its_runner_is_reported_failed(ml_client):
    record_job_without_runner(ml_client, "orphan")
    # a young job without a runner is left alone: its submitter may be about to start it
    assert ml_client.jobs.get("orphan").status == "NotStarted"

    catalog = ml_client._workspace.catalog
    catalog.update_job("orphan", created_at=time.time() - RUNNER_START_GRACE_SECONDS - 1)
    failed = ml_client.jobs.get("orphan")
    assert failed.status == "Failed"
    assert "runner never started" in failed.properties["localml.error"]
    assert [j.status for j in ml_client.jobs.list()] == ["Failed"]
    with pytest.raises(JobException, match="runner never started"):
        ml_client.jobs.stream("orphan")  # returns: a waiter is not left waiting
    assert mlflow_runs(ml_client)["orphan"] == "FAILED"


def test_a_runner_whose_submitter_died_before_recording_its_pid_records_its_own(ml_client, helpers):
    record_job_without_runner(ml_client, "unrecorded")
    # the submitter started the runner and was killed before writing its pid down
    runner = subprocess.Popen(
        [sys.executable, "-m", "localml.execution.runner", str(ml_client.root), "unrecorded"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    helpers.wait_for(lambda: ml_client._workspace.catalog.get_job("unrecorded")["pid"], timeout=60, what="the runner's pid")
    assert ml_client._workspace.catalog.get_job("unrecorded")["pid"] == runner.pid
    assert helpers.wait_for_status(ml_client, "unrecorded") == "Completed"
    assert runner.wait(timeout=30) == 0


def test_a_runner_that_starts_after_its_job_was_reported_failed_does_not_run_it(ml_client, helpers):
    record_job_without_runner(ml_client, "late")
    catalog = ml_client._workspace.catalog
    catalog.update_job("late", created_at=time.time() - RUNNER_START_GRACE_SECONDS - 1)
    assert ml_client.jobs.get("late").status == "Failed"

    # the submitter was only slow: it starts the runner now, too late
    earlier = {child.pid for child in psutil.Process().children()}
    with pytest.raises(RuntimeError, match="reported Failed meanwhile. Submit it again under another name"):
        ml_client.jobs._start_runner("late")
    [runner] = [child.pid for child in psutil.Process().children() if child.pid not in earlier]
    helpers.wait_for(lambda: helpers.process_gone(runner), timeout=60, what="the late runner to exit")
    row = catalog.get_job("late")
    assert row["status"] == "Failed" and "runner never started" in row["error"]
    assert not (ml_client._workspace.job_dir("late") / "user_logs").exists(), "the runner prepared a job that had ended"
