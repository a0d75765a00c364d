"""Faults everywhere: each quick flow, run once clean to learn which workspace operations it calls
(``LOCALML_RECORD_OPERATIONS``), then once per operation with a transient fault on it (``LOCALML_FAULTS``):
a 503 before a read, a lost reply (503 after it took effect) on a write. Every run completes with the clean
run's jobs and asset versions (one job per step, one version per registration), no line logged more often
than in the clean run and ``reused`` False; past the retry limit the run fails naming the job it left running.

``pytest -m slow tests/flows/test_faults.py -s`` prints each flow's table (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
from prefect.client.orchestration import get_client as prefect_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from flows.baseline import BaselineParameters, baseline
from flows.monitor import MonitorParameters, monitor
from flows.rai_review import RAIReviewParameters, rai_review
from flows.train import TrainParameters, train
from flows.tune import TuneParameters, tune
from localml.faults import ENV_VAR as FAULTS
from localml.faults import RECORD_ENV_VAR as RECORD
from tasks.rai import ScorecardThresholds
from tasks.retries import RETRIES
from tasks.workspace import get_client
from tests.amlkit.test_rai_insights import RAI_DATA, TARGET, save_model
from tests.flows.test_train import SAMPLE, SLOW_SCRIPT, task_runs


DIABETES = Path(__file__).resolve().parents[2] / "examples" / "data" / "diabetes"
WRITES = ("create", "begin_", "archive", "restore")


# -- the flows, and the parameters of a tiny run of each (after what its workspace needs first) ------------
def train_params(tmp: Path) -> TrainParameters:
    """A script that trains in a second on 500 rows, on a compute cluster the flow creates."""
    return TrainParameters(script=str(SLOW_SCRIPT), data=str(SAMPLE), hyperparameters={"sleep_seconds": 0})


def baseline_params(tmp: Path) -> BaselineParameters:
    from tests.flows.test_baseline import quick_params

    return quick_params(max_trials=2, enable_model_explainability=False)


def tune_params(tmp: Path) -> TuneParameters:
    """A grid of two trials at once of the quick script, the best by its accuracy."""
    return TuneParameters(
        script=str(SLOW_SCRIPT), data=str(SAMPLE), hyperparameters={}, primary_metric="accuracy", sampling_algorithm="grid",
        search_space={"sleep_seconds": {"type": "choice", "values": [0, 0.5]}}, early_termination=None, max_concurrent_trials=2,
    )


def rai_review_params(tmp: Path) -> RAIReviewParameters:
    """A logistic regression registered, reviewed with error analysis only."""
    from azure.ai.ml.entities import Model
    from sklearn.linear_model import LogisticRegression

    train = pd.read_csv(RAI_DATA / "train" / "diabetes.csv")
    features = train.drop(columns=[TARGET])
    path = save_model(LogisticRegression(max_iter=500).fit(features, train[TARGET]), features, tmp / "model")
    model = get_client("local").models.create_or_update(Model(name="diabetes-weak", path=path, type="mlflow_model"))
    return RAIReviewParameters(
        model=f"azureml:{model.name}:{model.version}", train_data=str(RAI_DATA / "train"), test_data=str(RAI_DATA / "test"),
        compute="local", max_test_rows=200, insights=["error_analysis"], output_folder=str(tmp / "reviews"),
        thresholds=ScorecardThresholds(primary_metric_threshold=None, max_fairness_gap=None),
    )


def monitor_params(tmp: Path) -> MonitorParameters:
    """diabetes:1 (the model's training data) and :2 with PlasmaGlucose shifted, a model tagged with :1."""
    from azure.ai.ml.entities import Data, Model

    client = get_client("local")
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    shifted = tmp / "shifted"
    shifted.mkdir()
    frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40).to_csv(shifted / "diabetes.csv", index=False)
    (shifted / "MLTable").write_text((DIABETES / "MLTable").read_text())
    for path in (DIABETES, shifted):
        client.data.create_or_update(Data(name="diabetes", path=str(path), type="mltable"))
    (tmp / "model").mkdir()
    (tmp / "model" / "weights.bin").write_text("w")
    client.models.create_or_update(Model(name="diabetes-baseline", path=str(tmp / "model"), type="custom_model", tags={"data": "azureml:diabetes:1"}))
    return MonitorParameters(data="azureml:diabetes:2")


FLOWS: dict[str, tuple[Callable, Callable[[Path], Any]]] = {
    "train": (train, train_params),
    "baseline": (baseline, baseline_params),
    "tune": (tune, tune_params),
    "rai_review": (rai_review, rai_review_params),
    "monitor": (monitor, monitor_params),
}


# -- what a run left ---------------------------------------------------------------------------
@dataclass
class Outcome:
    completed: bool
    message: str
    jobs: Counter  # jobs per ("top" or "child", experiment)
    versions: Counter  # versions the run registered, per (kind, name)
    submissions: int  # submit_job task runs
    lines: Counter  # how often a task run (or the flow run) logged each line, at most
    reused: bool | None
    calls: dict[str, int]

    def lines_repeated_beyond(self, clean: "Outcome") -> list[str]:
        """Lines logged more often than in the clean run (a job's own log may hold a line twice)."""
        return [line for line, n in self.lines.items() if n > clean.lines.get(line, 1)]

    def registrations(self) -> Counter:
        """Versions per registration; localml's code snapshots are named by content (a sweep's driver config holds the
        workspace's folder), so they are counted together."""
        counted = Counter()
        for (kind, name), n in self.versions.items():
            counted[(kind, "<snapshot>" if kind == "code" else name)] += n
        return counted

    def jobs_submitted(self) -> int:
        return sum(n for (kind, _), n in self.jobs.items() if kind == "top")


def run_case(flow: str, tmp: Path, faults: str | None) -> Outcome:
    """Run ``flow`` on a fresh workspace under ``faults`` (None: clean, counting the operations it calls).

    Faults and the count act on the flow's own calls, not on its setup's.
    """
    tmp.mkdir(parents=True)
    root = tmp / "localml"
    run, make_params = FLOWS[flow]
    with pytest.MonkeyPatch.context() as patch, temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp / "prefect-results"}):
        patch.setenv("LOCALML_ROOT", str(root))
        params = make_params(tmp)
        before = asset_versions(root)
        patch.setenv(*((RECORD, "1") if faults is None else (FAULTS, faults)))
        state = run(params, return_state=True)
    return outcome(state, root, before, tmp)


def asset_versions(root: Path) -> Counter:
    """Versions per (kind, name) in the workspace's catalog."""
    if not (root / "catalog.db").exists():
        return Counter()
    with closing(sqlite3.connect(root / "catalog.db")) as db:
        return Counter({(kind, name): n for kind, name, n in db.execute("SELECT kind, name, COUNT(*) FROM assets GROUP BY kind, name")})


def outcome(state, root: Path, versions_before: Counter, tmp: Path) -> Outcome:
    completed = state.is_completed()
    result = state.result(raise_on_failure=False) if completed else None
    with closing(sqlite3.connect(root / "catalog.db")) as db:
        # job names derive from the workspace, so jobs are told apart by their experiment, and children from parents
        jobs = Counter(
            ("child" if parent else "top", json.loads(spec).get("experiment_name")) for parent, spec in db.execute("SELECT parent, spec FROM jobs")
        )
        calls = dict(db.execute("SELECT operation, calls FROM operation_calls"))
        job_names = [name for (name,) in db.execute("SELECT name FROM jobs")]
    return Outcome(
        completed=completed,
        message=str(state.message),
        jobs=jobs,
        versions=asset_versions(root) - versions_before,
        submissions=sum(1 for name in task_runs(state) if name.startswith("submit_job")),
        lines=log_lines(state, job_names, tmp),
        reused=getattr(result, "reused", None),
        calls=calls,
    )


def log_lines(state, job_names: list[str], tmp: Path) -> Counter:
    """Each line of the flow run's log (its job names and folder made generic, to compare runs), and the most
    times one task run (or the flow run itself) logged it."""
    with prefect_client(sync_client=True) as client:
        deadline = time.monotonic() + 10
        while True:  # logs reach the server in batches: wait for the flow run's last line
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            if any("Finished in state" in log.message and log.task_run_id is None for log in logs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    per_run = Counter((log.task_run_id, generic(log.message, job_names, tmp)) for log in logs)
    most = Counter()
    for (_, line), n in per_run.items():
        most[line] = max(most[line], n)
    return most


def generic(message: str, job_names: list[str], tmp: Path) -> str:
    for name in sorted(job_names, key=len, reverse=True):  # a sweep's trials are named after it
        message = message.replace(name, "<job>")
    return message.replace(str(tmp), "<tmp>")


def fault_for(operation: str) -> str:
    """The representative transient fault of an operation: a lost reply for a write, a 503 before a read."""
    method = operation.split(".", 1)[1]
    return f"{operation}@after=503x1" if method.startswith(WRITES) else f"{operation}=503x1"


# -- the campaign --------------------------------------------------------------------------------
@pytest.mark.campaign
@pytest.mark.parametrize("flow", list(FLOWS))
def test_every_run_with_a_transient_fault_at_an_operation_it_uses_completes_once_and_honestly(flow, prefect_server, tmp_path):
    clean = run_case(flow, tmp_path / "clean", None)
    assert clean.completed, clean.message
    assert clean.calls, "the clean run called no workspace operation: is recording on?"
    assert not clean.reused and set(clean.versions.values()) <= {1}
    rows, problems = [], []
    for operation in sorted(clean.calls):
        fault = fault_for(operation)
        started = time.monotonic()
        run = run_case(flow, tmp_path / operation, fault)
        seconds = time.monotonic() - started
        checks = {
            "completed": run.completed,
            "same jobs": run.jobs == clean.jobs and run.jobs_submitted() == run.submissions,
            "one version per registration": run.registrations() == clean.registrations() and set(run.versions.values()) <= {1},
            "no line repeated": run.lines_repeated_beyond(clean) == [],
            "reused honest": run.reused in (None, False),
        }
        rows.append((fault, run, seconds))
        problems += [f"{fault}: {name} ({detail(run, clean, name)})" for name, ok in checks.items() if not ok]
    print_table(flow, clean, rows)
    assert problems == [], "\n".join(problems)


def detail(run: Outcome, clean: Outcome, check: str) -> str:
    return {
        "completed": run.message,
        "same jobs": f"{dict(run.jobs)} vs {dict(clean.jobs)}, {run.submissions} submissions",
        "one version per registration": f"{dict(run.registrations())} vs {dict(clean.registrations())}",
        "no line repeated": "; ".join(run.lines_repeated_beyond(clean)[:3]),
        "reused honest": f"reused={run.reused}",
    }[check]


def print_table(flow: str, clean: Outcome, rows: list) -> None:
    print(f"\n{flow}: the clean run calls {len(clean.calls)} operations; jobs {dict(clean.jobs)}; versions {dict(clean.registrations())}")
    print("| fault | completed | jobs (submitted / with children) | versions per registration (max) | lines repeated | reused | s |")
    print("|---|---|---|---|---|---|---|")
    for fault, run, seconds in rows:
        print(
            f"| `{fault}` | {run.completed} | {run.jobs_submitted()} / {sum(run.jobs.values())} | {max(run.versions.values(), default=0)} "
            f"| {len(run.lines_repeated_beyond(clean))} | {run.reused} | {seconds:.0f} |"
        )


@pytest.mark.slow
def test_past_the_retry_limit_the_run_fails_naming_the_job_it_left_running(workspace_root):
    from tests.flows.test_train import quick_params

    client = get_client("local")
    catalog = client._workspace.catalog

    def cut_off_once_running():  # the workspace stops answering once the job runs
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(job["status"] == "Running" for job in catalog.list_jobs()):
                os.environ[FAULTS] = f"jobs.get=503x{10 * (RETRIES + 1)}"
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=cut_off_once_running, daemon=True)
    watcher.start()
    try:
        state = train(quick_params(script=str(SLOW_SCRIPT), hyperparameters={"sleep_seconds": 60}, compute="local"), return_state=True)
    finally:
        watcher.join()
        os.environ.pop(FAULTS, None)
    [job] = catalog.list_jobs()
    try:
        assert state.is_failed()
        assert job["status"] in ("Queued", "Preparing", "Running")  # left running, as the message says
        assert f"following job {job['name']}, last seen " in state.message, state.message
        assert f"ml_client.jobs.begin_cancel('{job['name']}')" in state.message
        assert task_runs(state)["wait_for_job"].run_count == RETRIES + 1
    finally:
        client.jobs.begin_cancel(job["name"]).result(timeout=60)
