"""The detached process that runs one command job: ``python -m localml.execution.runner ROOT JOB``.

It outlives whoever submitted the job. It waits for a slot on the job's compute
(Queued), prepares a working folder and the job's environment (Preparing), runs
the command (Running), stores ``./outputs`` and the logs as the run's artifacts
(Finalizing) and records the final status. A cancel request arrives as SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from amlkit.placeholders import render_command
from amlkit.processes import is_alive, start_time
from localml.execution.processes import cancel_children, stop_tree
from localml.execution.venvs import BuildStopped, EnvironmentBuildError, ensure_venv
from localml.store import ACTIVE_STATUSES
from localml.tracking import run_context
from localml.workspace import LocalWorkspace

POLL_SECONDS = 0.2
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")

#: What a job takes from this machine's environment: what a process needs to run at all, which Azure's platform
#: gives every job too. The rest of the submitter's environment (its credentials above all) stays out, as on Azure,
#: where a job sees its own environment_variables, the MLflow and AZUREML variables and what the platform sets.
PLATFORM_VARIABLES = frozenset({
    "PATH",  # to find bash, python and the tools a command names (the job's interpreter goes first)
    "HOME",  # where libraries keep caches and settings (pip, matplotlib, joblib, huggingface)
    "USER", "LOGNAME",  # who runs it: getpass.getuser(), and MLflow's run user
    "LANG", "LANGUAGE",  # the locale (and every LC_* below): how text, the log included, is encoded
    "TZ",  # the time zone of the timestamps a job writes
    "TMPDIR", "TEMP", "TMP",  # the machine's scratch space, where tempfile writes
    "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT",  # Windows: without them Python opens no socket and finds no cmd.exe
})
#: Names more variables a job may see (comma-separated), for what this machine needs and Azure's image would set:
#: ``LOCALML_JOB_ENV_PASSTHROUGH=CUDA_VISIBLE_DEVICES,HTTPS_PROXY``. Test hooks such as LOCALML_FAULTS are not
#: passed unless named: they fake Azure's replies to the submitter, and a sweep's or pipeline's driver (localml's
#: stand-in for Azure's own services) would otherwise take the faults meant for the caller.
PASSTHROUGH_VARIABLE = "LOCALML_JOB_ENV_PASSTHROUGH"
#: localml's own programs run as jobs (the sweep, pipeline and AutoML drivers, the built-in RAI components): they
#: import the localml that runs this runner, wherever it is installed, so runner and driver are the same code.
_LOCALML_PROGRAM = re.compile(r"^\s*python\s+-m\s+localml\.")
LOCALML_SOURCE = Path(__file__).resolve().parents[2]


def passthrough_names(machine: Mapping[str, str]) -> list[str]:
    return [name.strip() for name in machine.get(PASSTHROUGH_VARIABLE, "").split(",") if name.strip()]


def job_environment(machine: Mapping[str, str], own: Mapping[str, str], platform: Mapping[str, str], command: str) -> dict[str, str]:
    """The environment a job runs with: the platform's basics and the named passthrough variables from ``machine``,
    then the job's own ``environment_variables``, then what the platform sets (MLflow, AZUREML, PATH)."""
    inherited = {k: v for k, v in machine.items() if k in PLATFORM_VARIABLES or k.startswith("LC_")}
    inherited.update({name: machine[name] for name in passthrough_names(machine) if name in machine})
    if PASSTHROUGH_VARIABLE in machine:  # a job that starts jobs (a sweep's trials, a pipeline's nodes) passes them on
        inherited[PASSTHROUGH_VARIABLE] = machine[PASSTHROUGH_VARIABLE]
    env = {**inherited, **own, **platform}
    if _LOCALML_PROGRAM.match(command):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LOCALML_SOURCE), own.get("PYTHONPATH")]))
    return env


class JobRunner:
    def __init__(self, workspace: LocalWorkspace, name: str):
        self.workspace = workspace
        self.catalog = workspace.catalog
        self.name = name
        self.job = self.catalog.get_job(name)
        self.record = self.job["record"]
        self.job_dir = workspace.job_dir(name)
        self.user_log = self.job_dir / "user_logs" / "std_log.txt"
        self.stop_reason: str | None = None
        self.child: subprocess.Popen | None = None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._request_stop("canceled"))
        if not self._record_pid():
            return
        status, error = "Failed", None
        try:
            if self._wait_for_slot():
                self._set_status("Preparing")
                command, workdir, env = self._prepare()
                self._set_status("Running")
                return_code = self._execute(command, workdir, env)
                self._set_status("Finalizing")
                self._store_artifacts(workdir)
                status, error = self._outcome(return_code)
                self._record_summary(workdir)
            else:
                status = "Canceled"
        except BuildStopped:
            status = "Canceled"
        except EnvironmentBuildError as exc:
            error = self._environment_failed(exc)
        except Exception as exc:  # the runner's own failure must still end the job with a reason
            error = f"localml could not run the job: {type(exc).__name__}: {exc}"
            print(error, file=sys.stderr)
        self._finish(status, error)

    def _record_pid(self) -> bool:
        """Record this process as the job's runner (its submitter does too, but may be killed before it can), so an
        active job always has a process to check. False when the job already ended: reported dead because this
        runner took too long to start, it must not run."""
        pid = os.getpid()
        return self.catalog.update_job(self.name, only_if_active=True, pid=pid, pid_started=start_time(pid))

    # -- Queued -------------------------------------------------------------------------
    def _wait_for_slot(self) -> bool:
        """Wait until the compute has a free instance and no earlier job is waiting for one (FIFO)."""
        self._set_status("Queued")
        cap = self.record.get("max_instances")
        while True:
            if self.stop_reason or self._cancel_requested():
                return False
            if cap is None:
                self.catalog.update_job(self.name, status="Preparing", started_at=time.time())
                return True
            with self.catalog.transaction() as db:
                rows = db.execute(
                    "SELECT name, seq, status, pid, pid_started FROM jobs WHERE compute=? AND status IN "
                    "('NotStarted', 'Queued', 'Preparing', 'Running', 'Finalizing', 'CancelRequested')",
                    (self.job["compute"],),
                ).fetchall()
                live = [r for r in rows if r["name"] != self.name and is_alive(r["pid"], r["pid_started"])]
                running = sum(1 for r in live if r["status"] in ACTIVE_STATUSES)
                # an earlier job whose runner has not queued yet (still NotStarted) is ahead too
                ahead = any(r["status"] in ("NotStarted", "Queued") and r["seq"] < self.job["seq"] for r in live)
                if running < cap and not ahead:
                    self.catalog.update_job(self.name, db=db, status="Preparing", started_at=time.time())
                    return True
            time.sleep(POLL_SECONDS)

    # -- Preparing ------------------------------------------------------------------------
    def _prepare(self) -> tuple[str, Path, dict[str, str]]:
        prepared = self.record["prepared"]
        workdir = self.job_dir / "wd"
        shutil.rmtree(workdir, ignore_errors=True)
        if prepared["code"]:
            code_name = prepared["code"].split(":")[1]
            source = self.workspace.resolve_uri(self.catalog.get_asset("code", code_name, "1")["path"])
            if source.is_dir():
                shutil.copytree(source, workdir)
            else:
                workdir.mkdir(parents=True)
                shutil.copy2(source, workdir / source.name)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "outputs").mkdir(exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        outputs = {}
        for key, uri in self.record["outputs"].items():
            path = self.workspace.resolve_uri(uri)
            is_file = prepared["output_types"][key] == "uri_file"
            (path.parent if is_file else path).mkdir(parents=True, exist_ok=True)
            outputs[key] = str(path)
        for warning in self.record.get("warnings", []):
            self._log_line(f"[localml] warning: {warning}")
        command = render_command(prepared["command"], prepared["inputs"], outputs)
        interpreter = self._interpreter()
        platform = {
            "MLFLOW_TRACKING_URI": self.workspace.tracking.uri,
            "MLFLOW_RUN_ID": self.name,
            "MLFLOW_EXPERIMENT_ID": self.record["experiment_id"],
            "MLFLOW_RUN_CONTEXT": run_context(self.name, prepared["environment_variables"].get("MLFLOW_RUN_CONTEXT")),
            "AZUREML_RUN_ID": self.name,
            "AZUREML_ARM_WORKSPACE_NAME": self.record["workspace_name"],
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{interpreter.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        if self.record.get("environment_build"):
            platform["VIRTUAL_ENV"] = str(interpreter.parent.parent)
        return command, workdir, job_environment(os.environ, prepared["environment_variables"], platform, command)

    def _interpreter(self) -> Path:
        """The job's Python: the current one for curated and image-only environments, else its built venv's."""
        plan = self.record.get("environment_build")
        if plan is None:
            return Path(self.record["interpreter"])
        return ensure_venv(
            self.workspace.root,
            plan,
            self._log_line,
            keep_log_at=self.job_dir / "system_logs" / "environment_build.txt",
            stop=lambda: self.stop_reason is not None,
        )

    def _environment_failed(self, exc: EnvironmentBuildError) -> str:
        """The job's error; its user log gets it too (with the build log's tail), and the logs become artifacts."""
        error = f"{exc}\nFull log: system_logs/environment_build.txt"
        self._log_line(f"[localml] {error}")
        try:
            self._store_artifacts(self.job_dir / "wd")
        except Exception as store_exc:  # the build's failure is the job's error; a tracking hiccup must not hide it
            print(f"could not store the logs of {self.name}: {store_exc}", file=sys.stderr)
        return error

    # -- Running --------------------------------------------------------------------------
    def _execute(self, command: str, workdir: Path, env: dict[str, str]) -> int:
        timeout = self.record["prepared"].get("timeout")
        deadline = time.monotonic() + timeout if timeout else None
        self._log_line(f"[localml] running: {command}")
        with open(self.user_log, "ab") as log:
            self.child = subprocess.Popen(
                ["/bin/bash", "-c", command], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            next_check = time.monotonic() + 1.0
            while not self._exited_within(POLL_SECONDS):
                now = time.monotonic()
                if deadline is not None and now > deadline and not self.stop_reason:
                    self._request_stop(f"timeout of {timeout} s")
                if now > next_check:
                    next_check = now + 1.0
                    if self._cancel_requested():
                        self._request_stop("canceled")
                if self.stop_reason:
                    # a sweep's trials and a pipeline's nodes run under this process too: marked CancelRequested
                    # first, they end Canceled even when stop_tree kills their runner before it records that
                    cancel_children(self.catalog, self.name)
                    stop_tree(os.getpid(), include_root=False)
        return self.child.returncode

    def _exited_within(self, seconds: float) -> bool:
        """Wait for the command, returning as soon as it exits (a fixed sleep would add up to ``seconds`` to every job)."""
        try:
            self.child.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _cancel_requested(self) -> bool:
        return self.catalog.get_job(self.name)["status"] == "CancelRequested"

    # -- Finalizing -----------------------------------------------------------------------
    def _store_artifacts(self, workdir: Path) -> None:
        for local, artifact_path in (
            (workdir / "outputs", "outputs"),
            (workdir / "logs", "logs"),
            (self.job_dir / "user_logs", "user_logs"),
            (self.job_dir / "system_logs", "system_logs"),
        ):
            if local.is_dir() and any(local.iterdir()):
                self.workspace.tracking.log_artifacts(self.name, local, artifact_path)

    def _record_summary(self, workdir: Path) -> None:
        """Copy the properties a job's program reported (an AutoML job's best run) into the job's record."""
        summary_file = self.record.get("summary_file")
        if not summary_file or not (workdir / summary_file).is_file():
            return
        summary = json.loads((workdir / summary_file).read_text())
        self.record["properties"] = {key: str(summary[key]) for key in self.record["summary_properties"] if summary.get(key) is not None}
        self.catalog.update_job(self.name, record=self.record)

    def _outcome(self, return_code: int) -> tuple[str, str | None]:
        if self.stop_reason == "canceled":
            return "Canceled", None
        if self.stop_reason:
            return "Failed", f"Execution stopped: the job exceeded its {self.stop_reason}."
        if return_code == 0:
            return "Completed", None
        return "Failed", (
            f"Execution failed. User process exited with status code {return_code}. "
            f"{self._last_exception()}See user_logs/std_log.txt for details."
        )

    def _last_exception(self) -> str:
        lines = self.user_log.read_text(errors="replace").splitlines()[-200:] if self.user_log.exists() else []
        for line in reversed(lines):
            if _EXCEPTION_LINE.match(line.strip()):
                return f"Error: {line.strip()} "
        return ""

    def _finish(self, status: str, error: str | None) -> None:
        self.catalog.update_job(self.name, only_if_active=True, status=status, error=error, ended_at=time.time())
        cancel_children(self.catalog, self.name)
        try:
            self.workspace.tracking.end_run(self.name, status)
        except Exception as exc:  # the job's status is recorded; a tracking hiccup must not hide it
            print(f"could not end MLflow run {self.name}: {exc}", file=sys.stderr)

    # -- helpers --------------------------------------------------------------------------
    def _set_status(self, status: str) -> None:
        with self.catalog.transaction() as db:
            db.execute(
                "UPDATE jobs SET status=? WHERE name=? AND status NOT IN ('Completed', 'Failed', 'Canceled', 'CancelRequested')",
                (status, self.name),
            )

    def _log_line(self, line: str) -> None:
        self.user_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.user_log, "a") as log:
            log.write(line + "\n")


def main(argv: list[str]) -> None:
    root, name = argv
    JobRunner(LocalWorkspace(root, name=Path(root).name), name).run()


if __name__ == "__main__":
    main(sys.argv[1:])
