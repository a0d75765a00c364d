"""The venvs of custom environments: built once per plan hash under ``<root>/environments/<hash>/``, then shared.

A job's runner calls ``ensure_venv`` while the job is Preparing. The folder holds ``venv/``, the
``requirements.txt`` it was built from, ``build.log`` and, once a build has succeeded, ``ready.json``:
a venv without that marker is a build that failed or died half way, and the next job builds it again.
Jobs of the same environment may start together, so a build holds ``.lock`` (``flock``, released by
the kernel even if the runner is killed) and a job that finds it held waits, then reuses the venv.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from localml.execution.processes import stop_tree

POLL_SECONDS = 0.2
TAIL_LINES = 20


class EnvironmentBuildError(Exception):
    """A build step failed; the message names the environment and quotes the end of the build log."""


class BuildStopped(Exception):
    """The job was canceled while its environment was being built or waited for."""


def ensure_venv(
    root: Path, plan: dict, log: Callable[[str], None], *, keep_log_at: Path, stop: Callable[[], bool]
) -> Path:
    """The interpreter of ``plan``'s venv, built first if no job has built it yet.

    ``log`` gets the lines a person following the job should see; the build log is copied to
    ``keep_log_at``. ``stop`` is polled while waiting or building: when it says so the build is
    abandoned (and ``BuildStopped`` raised).
    """
    folder = Path(root) / "environments" / plan["hash"]
    folder.mkdir(parents=True, exist_ok=True)
    label = f"{plan['name']} ({plan['hash'][:12]})"
    python = folder / "venv" / "bin" / "python"
    with _locked(folder / ".lock", stop, lambda: log(f"[localml] environment {label} is being built by another job; waiting")):
        try:
            marker = folder / "ready.json"
            # a venv whose base interpreter was removed since (a Python upgrade) is built again
            if marker.exists() and python.exists():
                built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(json.loads(marker.read_text())["built_at"]))
                log(f"[localml] reusing environment {label} built {built}")
            else:
                _build(folder, plan, label, log, stop)
        finally:
            if (folder / "build.log").exists():
                keep_log_at.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / "build.log", keep_log_at)
    return python


def _build(folder: Path, plan: dict, label: str, log: Callable[[str], None], stop: Callable[[], bool]) -> None:
    venv = folder / "venv"
    shutil.rmtree(venv, ignore_errors=True)  # what a failed or killed build left
    (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in plan["requirements"]))
    log(f"[localml] building environment {label}: {len(plan['requirements'])} pip requirement(s) on Python {plan['python']}")
    started = time.time()
    # pip installs into another interpreter with --python, so the venv needs no pip of its own (a faster
    # build); a runner without pip (a venv made by uv, say) has the venv bring its own
    python = str(venv / "bin" / "python")
    if importlib.util.find_spec("pip") is not None:
        steps = [("venv", [sys.executable, "-m", "venv", "--without-pip", str(venv)])]
        pip = [sys.executable, "-m", "pip", "--python", python]
    else:
        steps = [("venv", [sys.executable, "-m", "venv", str(venv)])]
        pip = [python, "-m", "pip"]
    if plan["requirements"]:
        install = ["install", "--disable-pip-version-check", "--no-input", "-r", str(folder / "requirements.txt")]
        steps.append(("pip", pip + install))
    with open(folder / "build.log", "w") as out:
        out.write(f"environment {label}, Python {plan['python']}\n")
        out.writelines(f"note: {note}\n" for note in plan.get("notes", []))
        for step, command in steps:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            status = _run(command, out, stop)
            if status == 0:
                continue
            shutil.rmtree(venv, ignore_errors=True)
            if status is None:
                out.write("build stopped: the job was canceled\n")
                raise BuildStopped(label)
            out.write(f"{step} exited with status {status}\n")
            out.flush()
            tail = "\n".join((folder / "build.log").read_text(errors="replace").splitlines()[-TAIL_LINES:])
            raise EnvironmentBuildError(
                f"Environment '{plan['name']}' could not be built: {step} exited with status {status}. "
                f"Last lines of the build log:\n{tail}"
            )
    seconds = time.time() - started
    marker = {"plan": plan, "built_at": time.time(), "seconds": round(seconds, 3)}
    (folder / "ready.json.partial").write_text(json.dumps(marker, indent=2))
    os.replace(folder / "ready.json.partial", folder / "ready.json")
    log(f"[localml] built environment {label} in {seconds:.1f} s")


def _run(command: list[str], out, stop: Callable[[], bool]) -> int | None:
    """Run one build step with its output in the build log; None if ``stop`` ended it."""
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    while process.poll() is None:
        if stop():
            stop_tree(process.pid)
            process.wait()
            return None
        time.sleep(POLL_SECONDS)
    return process.returncode


@contextmanager
def _locked(path: Path, stop: Callable[[], bool], on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; poll rather than block, so a cancel is not stuck behind a build."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    on_wait()
                    waited = True
                if stop():
                    raise BuildStopped(path.parent.name) from None
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
