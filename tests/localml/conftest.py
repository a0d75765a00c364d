"""Fixtures for the localml suite: a fresh workspace per test, tiny job scripts, and waiting helpers.

Real parts only: jobs run as real detached processes against a real SQLite MLflow store.
Importing mlflow in a job costs seconds, so only the scripts that log to MLflow import it.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from localml import LocalMLClient

ENV = "AzureML-sklearn-1.5@latest"
REPO = Path(__file__).resolve().parents[2]
DIABETES_DIR = REPO / "examples" / "data" / "diabetes"
TRAIN_DIR = REPO / "examples" / "train_diabetes"
TERMINAL = ("Completed", "Failed", "Canceled")
JOB_TIMEOUT = 120.0  # generous: a job is a few seconds, but a loaded 2-core machine can be slow

SCRIPTS = {
    # records what the job was given: each argument, and for paths the file text or folder listing
    "seen.py": """
        import json, pathlib, sys
        seen = []
        for arg in sys.argv[1:]:
            path = pathlib.Path(arg)
            item = {"arg": arg}
            if path.is_file():
                item["text"] = path.read_text()
            elif path.is_dir():
                item["listing"] = sorted(p.name for p in path.iterdir())
            seen.append(item)
        print("SEEN " + json.dumps(seen))
        pathlib.Path("outputs").mkdir(exist_ok=True)
        pathlib.Path("outputs/seen.json").write_text(json.dumps(seen))
    """,
    # logs a metric to the job's MLflow run and writes to ./outputs and to a named output
    "metric.py": """
        import argparse, pathlib
        import mlflow
        parser = argparse.ArgumentParser()
        parser.add_argument("--out", required=True)
        parser.add_argument("--greeting", default="hello")
        args = parser.parse_args()
        print(f"{args.greeting} from the metric job")
        mlflow.log_metric("answer", 42.0)
        mlflow.log_param("greeting", args.greeting)
        pathlib.Path("outputs").mkdir(exist_ok=True)
        pathlib.Path("outputs/result.txt").write_text("written to ./outputs")
        pathlib.Path(args.out, "named.txt").write_text("written to the named output")
        print("metric job done")
    """,
    "fail.py": """
        print("about to fail", flush=True)
        raise ValueError("boom")
    """,
    # sleeps in a loop; writes its pid (atomically) and its start/end times for the test to read
    "sleep.py": """
        import argparse, json, os, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--state", required=True)
        args = parser.parse_args()
        def save(**fields):
            partial = args.state + ".partial"
            with open(partial, "w") as f:
                json.dump(fields, f)
            os.replace(partial, args.state)
        start = time.time()
        save(pid=os.getpid(), start=start)
        print(f"sleeping {args.seconds} s in pid {os.getpid()}", flush=True)
        while time.time() < start + args.seconds:
            time.sleep(0.05)
        save(pid=os.getpid(), start=start, end=time.time())
        print("woke up", flush=True)
    """,
}


@pytest.fixture
def ml_client(tmp_path):
    """A LocalMLClient on its own workspace root; jobs a failed test leaves behind are stopped."""
    client = LocalMLClient(tmp_path / "ws")
    yield client
    stop_leftover_jobs(client)


def stop_leftover_jobs(client: LocalMLClient) -> None:
    catalog = client._workspace.catalog
    for row in catalog.list_jobs():
        if row["status"] in TERMINAL:
            continue
        try:
            client.jobs.begin_cancel(row["name"]).result(timeout=30)
        except Exception:
            pass
        pid = catalog.get_job(row["name"])["pid"]
        if pid and psutil.pid_exists(pid):
            try:
                os.killpg(pid, signal.SIGKILL)  # the runner leads its own process group
            except OSError:
                pass


@pytest.fixture
def code_dir(tmp_path) -> Path:
    """A code folder (outside the workspace root) holding the tiny job scripts."""
    folder = tmp_path / "src"
    folder.mkdir()
    for name, text in SCRIPTS.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def wait_for(predicate, timeout: float = JOB_TIMEOUT, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_for_status(ml_client, name: str, statuses=TERMINAL, timeout: float = JOB_TIMEOUT) -> str:
    """Wait until job ``name`` reaches one of ``statuses``; return that status."""
    return wait_for(
        lambda: (lambda s: s if s in statuses else None)(ml_client.jobs.get(name).status),
        timeout=timeout,
        what=f"job {name} to reach {statuses}",
    )


def read_state(path: Path) -> dict | None:
    """The state file sleep.py writes, or None before it exists."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def helpers():
    """The waiting helpers and paths, for test modules (conftest is not importable by name)."""
    return SimpleNamespace(
        ENV=ENV,
        DIABETES_DIR=DIABETES_DIR,
        TRAIN_DIR=TRAIN_DIR,
        JOB_TIMEOUT=JOB_TIMEOUT,
        wait_for=wait_for,
        wait_for_status=wait_for_status,
        read_state=read_state,
        process_gone=process_gone,
    )
