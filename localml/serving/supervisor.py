"""The supervisor: starts, checks, restarts and stops an endpoint's router and its deployments' hosts.

It follows the contract in ``localml.serving``. Every process it starts is detached (its own session; stdout and
stderr to a log file), so endpoints outlive their caller as jobs do, and its pid and start time go into the
catalog at once, so a later caller can tell it from a process that reused the pid.

A deployment is provisioned by ``python -m localml.serving.supervisor ROOT ENDPOINT DEPLOYMENT``, a detached
process that builds the deployment's environment if it needs one, starts its hosts, waits until each says ready
and answers ``GET /ready``, and records Succeeded or Failed. ``ensure_running`` starts again, in the caller, what
the catalog records as running and is gone (or fails its liveness probe), and waits for it, so the operation that
found it down gets an answer.

Short steps that read and rewrite a row or ``endpoint.json`` hold the endpoint's lock (``flock``); waiting for
processes and building environments do not, so a ``get`` never waits behind a minutes-long build. The lock is not
re-entrant: a method that takes it calls only helpers that do not.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from amlkit.processes import is_alive, start_time
from localml.execution.processes import stop_tree
from localml.execution.runner import LOCALML_SOURCE, job_environment
from localml.execution.venvs import EnvironmentBuildError, ensure_venv
from localml.serving.endpoint_file import CHECK_EVERY_SECONDS
from localml.serving.records import (
    DEPLOYMENT_KIND,
    ENDPOINT_KIND,
    IN_PROGRESS,
    EndpointFiles,
    deployment_key,
    deployment_row,
    deployment_rows,
    endpoint_row,
    save_deployment,
    save_endpoint,
)
from localml.workspace import LocalWorkspace

HOST_SCRIPT = Path(__file__).with_name("host.py")
POLL_SECONDS = 0.1
#: The router imports only what it serves with; on a loaded 2-core machine it listens within a few seconds.
ROUTER_START_SECONDS = 30.0
#: The largest request body a deployment takes (the contract's figure; Azure answers 413 above its own limit).
MAX_BODY_BYTES = 100 * 1024 * 1024
LOG_TAIL_LINES = 20


class ServingError(Exception):
    """A process of an endpoint could not start or did not become ready; the message says why and where to look."""


class Supervisor:
    def __init__(self, workspace: LocalWorkspace):
        self._workspace = workspace
        self._catalog = workspace.catalog

    def files(self, endpoint: str) -> EndpointFiles:
        return EndpointFiles(self._workspace.root, endpoint)

    # -- the router -------------------------------------------------------------------------
    def start_router(self, endpoint: str) -> None:
        """Start the endpoint's router on its recorded port, unless it runs; ``await_router`` waits until it listens."""
        files = self.files(endpoint)
        with self._locked(files):
            row = endpoint_row(self._catalog, endpoint)
            if row is None or _alive(row.get("router")):
                return
            self._write_endpoint_file(files, row)
            files.router_json.unlink(missing_ok=True)  # a dead router's: the new one writes its own once listening
            command = [sys.executable, "-m", "localml.serving.router", str(files.folder), "--port", str(row["port"])]
            with open(files.router_log, "ab") as log:
                router = _detached(command, log, env=_localml_environment())
            row.update(router=_process_record(router), provisioning_state="Creating", error=None)
            save_endpoint(self._catalog, row)

    def settle_router(self, endpoint: str) -> str:
        """One look at a starting router: the endpoint's provisioning state, Succeeded once it listens, Failed (with the
        reason recorded) once it exited or ``ROUTER_START_SECONDS`` passed, else still Creating."""
        files = self.files(endpoint)
        row = endpoint_row(self._catalog, endpoint)
        if row is None or row["provisioning_state"] == "Succeeded":  # a Failed one may have listened late: looked at again
            return row and row["provisioning_state"]
        router, listening = row.get("router"), _read_json(files.router_json)
        if router and listening and listening.get("pid") == router["pid"]:
            state, error = "Succeeded", None
        elif not _alive(router):
            state, error = "Failed", (
                f"The router of endpoint '{endpoint}' exited before it listened on port {row['port']} (its "
                f"scoring_uri's port, kept for the endpoint's life). {_log_excerpt(files.router_log)}"
            )
        elif time.time() > (router["started"] or 0) + ROUTER_START_SECONDS:
            state, error = "Failed", (
                f"The router of endpoint '{endpoint}' did not listen within {ROUTER_START_SECONDS:g} s. {_log_excerpt(files.router_log)}"
            )
        else:
            return row["provisioning_state"]  # still starting (Creating)
        with self._locked(files):
            row = endpoint_row(self._catalog, endpoint)
            if row is not None and row.get("router") == router:
                row.update(provisioning_state=state, error=error)
                save_endpoint(self._catalog, row)
        return state

    def await_router(self, endpoint: str) -> None:
        """Wait until a starting router listens; raise the recorded reason if it failed."""
        while (state := self.settle_router(endpoint)) == "Creating":
            time.sleep(POLL_SECONDS)
        if state == "Failed":
            raise ServingError(endpoint_row(self._catalog, endpoint)["error"])

    def write_endpoint_file(self, endpoint: str) -> None:
        """Rewrite ``endpoint.json`` from the catalog (after its traffic or credentials changed); the router reloads it."""
        files = self.files(endpoint)
        with self._locked(files):
            row = endpoint_row(self._catalog, endpoint)
            if row is not None:
                self._write_endpoint_file(files, row)

    def router_has_read(self, endpoint: str) -> bool:
        """True once every request the router takes sees the last ``endpoint.json``: a request makes it look at the
        file when its last look is ``CHECK_EVERY_SECONDS`` old. Twice that from the file's time, which the file
        system takes from a coarse clock."""
        try:
            written = self.files(endpoint).endpoint_json.stat().st_mtime
        except FileNotFoundError:
            return True
        return time.time() >= written + 2 * CHECK_EVERY_SECONDS

    # -- deployments ------------------------------------------------------------------------
    def start_deployment(self, row: dict) -> None:
        """Record ``row`` (a new or changed deployment, Creating or Updating) and provision it in a detached process,
        which brings it up even if the caller exits. The processes of what the row replaces are stopped first; all
        under the endpoint's lock, so no other caller restarts them with the old settings meanwhile."""
        endpoint, deployment = row["endpoint_name"], row["name"]
        files = self.files(endpoint)
        files.deployment_dir(deployment).mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "localml.serving.supervisor", str(self._workspace.root), endpoint, deployment]
        with self._locked(files):
            _stop_deployment(deployment_row(self._catalog, endpoint, deployment))
            with open(files.log(deployment), "ab") as log:
                provisioner = _detached(command, log, env=_localml_environment())
            # the revision tells this provisioning from a later one: a provisioner or restart of an older revision
            # that ends late records nothing over the newer row
            row.update(provisioner=_process_record(provisioner), revision=uuid.uuid4().hex)
            save_deployment(self._catalog, row)
            self._write_endpoint_file(files, endpoint_row(self._catalog, endpoint))  # a replaced deployment takes no requests until ready

    def provision(self, endpoint: str, deployment: str) -> None:
        """Bring a Creating or Updating deployment up; record Succeeded, or Failed with the reason (the provisioner's work)."""
        with self._locked(self.files(endpoint)):  # after the row its starter saves with this process's pid
            row = deployment_row(self._catalog, endpoint, deployment)
        if row is None or row["provisioning_state"] not in IN_PROGRESS:
            return
        for warning in row["warnings"]:
            self._log(endpoint, deployment, f"warning: {warning}")
        try:
            self._bring_up(endpoint, row, range(row["instance_count"]))
        except Exception as error:  # the provisioner's own failure must still end the deployment with a reason
            self._fail(endpoint, row, f"localml could not provision the deployment: {type(error).__name__}: {error}", {})
            raise

    def ensure_running(self, endpoint: str) -> None:
        """Start again what the catalog records as running and is gone (the router, a deployment's hosts, a provisioner
        that died half way) or fails its liveness probe, and wait until what was restarted is ready."""
        row = endpoint_row(self._catalog, endpoint)
        if row is None:
            return
        if not _alive(row.get("router")):
            self.start_router(endpoint)
        if not _alive(row.get("router")) or row["provisioning_state"] != "Succeeded":
            self.await_router(endpoint)
        restarted = False
        for deployment in deployment_rows(self._catalog, endpoint):
            if deployment["provisioning_state"] in IN_PROGRESS and not _alive(deployment.get("provisioner")):
                self._log(endpoint, deployment["name"], "the provisioner is gone: starting it again")
                self.start_deployment(deployment)
            elif deployment["provisioning_state"] == "Succeeded":
                gone = [i for i, host in enumerate(deployment["instances"]) if not _alive(host)]
                if gone:
                    self._log(endpoint, deployment["name"], f"instance(s) {gone} are gone: starting them again")
                hung = self._hung(endpoint, deployment, exclude=gone)
                if gone or hung:
                    self._bring_up(endpoint, deployment, gone + hung)
                    restarted = True
        while restarted and not self.router_has_read(endpoint):  # the request that follows goes to the new instances
            time.sleep(POLL_SECONDS)

    def _hung(self, endpoint: str, row: dict, exclude: list[int]) -> list[int]:
        """The instances that run but fail the liveness probe (no 200 from ``GET /live`` within its ``timeout``), each
        stopped, so it is started again as Azure restarts such a container. A host answers ``/live`` while it predicts."""
        timeout, hung = row["liveness_probe"]["timeout"], []
        for instance, host in enumerate(row["instances"]):
            if instance not in exclude and host and host.get("port") and not _answers(host["port"], "live", timeout):
                self._log(endpoint, row["name"], f"instance {instance} did not answer GET /live within {timeout} s "
                                                 "(liveness_probe.timeout): stopping it to start it again")
                stop_tree(host["pid"], grace_seconds=1)  # a host that answers nothing will not shut down gracefully either
                hung.append(instance)
        return hung

    def stop(self, endpoint: str, deployment: str | None = None) -> None:
        """Stop every process recorded for the endpoint (its router too) or for one of its deployments, as a reboot
        would: the rows stay, so the next operation that reads them starts everything again."""
        with self._locked(self.files(endpoint)):
            self._stop(endpoint, deployment)

    def remove(self, endpoint: str, deployment: str | None = None) -> None:
        """Stop the endpoint's processes (or one deployment's) and forget them: rows and files, in one locked step, so
        no other caller finds the rows with their processes gone and starts them again."""
        files = self.files(endpoint)
        with self._locked(files):
            self._stop(endpoint, deployment)
            for row in self._deployments(endpoint, deployment):
                self._catalog.delete_resource(DEPLOYMENT_KIND, deployment_key(endpoint, row["name"]))
            if deployment is None:
                self._catalog.delete_resource(ENDPOINT_KIND, endpoint)
                shutil.rmtree(files.folder, ignore_errors=True)
            else:
                self._write_endpoint_file(files, endpoint_row(self._catalog, endpoint))
                shutil.rmtree(files.deployment_dir(deployment), ignore_errors=True)

    def _stop(self, endpoint: str, deployment: str | None) -> None:
        for row in self._deployments(endpoint, deployment):
            _stop_deployment(row)
        if deployment is None:
            _stop((endpoint_row(self._catalog, endpoint) or {}).get("router"))

    def _deployments(self, endpoint: str, deployment: str | None) -> list[dict]:
        if deployment is None:
            return deployment_rows(self._catalog, endpoint)
        return list(filter(None, [deployment_row(self._catalog, endpoint, deployment)]))

    # -- bringing hosts up ------------------------------------------------------------------
    def _bring_up(self, endpoint: str, row: dict, instances) -> None:
        """Start ``instances`` of the deployment and wait until each is ready; Failed with the reason if one is not."""
        started: dict[int, subprocess.Popen] = {}
        try:
            python = self._interpreter(endpoint, row)
            started = self._start_hosts(endpoint, row, instances, python)
            ports = self._await_hosts(endpoint, row, started)
        except (ServingError, EnvironmentBuildError) as error:
            self._fail(endpoint, row, str(error), started)
            return
        files = self.files(endpoint)
        with self._locked(files):
            current = self._same_revision(endpoint, row, started)
            if current is None:
                return
            for instance, port in ports.items():
                current["instances"][instance]["port"] = port
            # the provisioner stays recorded: a removal that comes while it is still exiting stops it too
            current.update(provisioning_state="Succeeded", error=None)
            save_deployment(self._catalog, current)
            self._write_endpoint_file(files, endpoint_row(self._catalog, endpoint))
        self._log(endpoint, row["name"], f"ready: instance(s) {sorted(ports)} on port(s) {[ports[i] for i in sorted(ports)]}")

    def _interpreter(self, endpoint: str, row: dict) -> str:
        """The deployment's Python: this one for a curated environment, else its conda spec's venv (built once, shared with jobs)."""
        plan = row["runtime"].get("environment_build")
        if plan is None:
            return row["runtime"]["interpreter"]
        files = self.files(endpoint)
        return str(ensure_venv(
            self._workspace.root,
            plan,
            lambda line: self._log(endpoint, row["name"], line.removeprefix("[localml] ")),
            keep_log_at=files.deployment_dir(row["name"]) / "environment_build.txt",
            stop=lambda: False,  # a provisioner is stopped by killing it; the build lock is released with it
        ))

    def _start_hosts(self, endpoint: str, row: dict, instances, python: str) -> dict[int, subprocess.Popen]:
        """Start the hosts of ``instances`` that do not run, recording each at once."""
        files = self.files(endpoint)
        started = {}
        with self._locked(files):
            row = self._same_revision(endpoint, row, started)
            if row is None:
                return started
            for instance in instances:
                if not _alive(row["instances"][instance]):
                    started[instance] = self._start_host(files, row, instance, python)
                    row["instances"][instance] = {**_process_record(started[instance]), "port": None}
            save_deployment(self._catalog, row)
        return started

    def _start_host(self, files: EndpointFiles, row: dict, instance: int, python: str) -> subprocess.Popen:
        deployment = row["name"]
        model_dir = self._local(row["model_path"])
        code_dir = self._local(row["code_path"])
        spec = {
            "endpoint": row["endpoint_name"], "deployment": deployment, "instance": instance, "port": 0,
            "model_kind": row["model_kind"], "model_dir": model_dir, "code_dir": code_dir,
            "scoring_script": row["scoring_script"],
            "max_concurrent_requests": row["request_settings"]["max_concurrent_requests_per_instance"],
            "max_body_bytes": MAX_BODY_BYTES, "state_file": str(files.host_state(deployment, instance)),
        }
        files.host_state(deployment, instance).unlink(missing_ok=True)  # a dead host's: ready means this one's
        _write_json(files.host_spec(deployment, instance), spec)
        platform = {"PYTHONUNBUFFERED": "1", "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        if model_dir:  # Azure's AZUREML_MODEL_DIR holds the model's folder, which scoring scripts join to it
            platform["AZUREML_MODEL_DIR"] = str(Path(model_dir).parent)
        if "environment_build" in row["runtime"]:
            platform["VIRTUAL_ENV"] = str(Path(python).parent.parent)
        # a host sees what a job sees: its own environment_variables and the platform's, never the caller's secrets
        env = job_environment(os.environ, row["environment_variables"], platform, command="")
        self._log(row["endpoint_name"], deployment, f"starting instance {instance}: {python} {HOST_SCRIPT.name}")
        with open(files.log(deployment), "ab") as log:
            return _detached([python, str(HOST_SCRIPT), str(files.host_spec(deployment, instance))], log, env=env,
                             cwd=code_dir or files.deployment_dir(deployment))

    def _await_hosts(self, endpoint: str, row: dict, started: dict[int, subprocess.Popen]) -> dict[int, int]:
        """The port of each started host once its state file says ready and ``GET /ready`` answers 200.

        The readiness probe bounds the wait as on Azure: ``initial_delay + period x failure_threshold`` seconds.
        """
        files, deployment, probe = self.files(endpoint), row["name"], row["readiness_probe"]
        limit = probe["initial_delay"] + probe["period"] * probe["failure_threshold"]
        deadline = time.monotonic() + limit
        ports, waiting = {}, dict(started)
        while waiting:
            for instance, process in list(waiting.items()):
                state = _read_json(files.host_state(deployment, instance)) or {}
                if state.get("pid") == process.pid and state.get("ready") is False:
                    raise ServingError(self._failure(endpoint, deployment, instance, state.get("error") or "its model did not load"))
                if process.poll() is not None:
                    raise ServingError(self._failure(endpoint, deployment, instance, f"it exited with status {process.returncode} before it was ready"))
                if state.get("pid") == process.pid and state.get("ready") and _answers(state["port"], "ready", probe["timeout"]):
                    ports[instance] = state["port"]
                    del waiting[instance]
            if waiting and time.monotonic() > deadline:
                raise ServingError(self._failure(endpoint, deployment, min(waiting), (
                    f"it was not ready within {limit:g} s (readiness_probe: initial_delay {probe['initial_delay']} + "
                    f"period {probe['period']} x failure_threshold {probe['failure_threshold']}); raise those if its model loads slowly"
                )))
            if waiting:
                time.sleep(POLL_SECONDS)
        return ports

    def _failure(self, endpoint: str, deployment: str, instance: int, reason: str) -> str:
        return (
            f"Deployment '{deployment}' of endpoint '{endpoint}' failed: instance {instance} did not start: {reason}. "
            f"Its log: ml_client.online_deployments.get_logs(name='{deployment}', endpoint_name='{endpoint}', lines=50)."
        )

    def _fail(self, endpoint: str, row: dict, error: str, started: dict[int, subprocess.Popen]) -> None:
        """Stop what the deployment runs and record it Failed with ``error`` (its log says it too)."""
        self._log(endpoint, row["name"], error)
        files = self.files(endpoint)
        with self._locked(files):
            row = self._same_revision(endpoint, row, started)
            if row is None:
                return
            for host in row["instances"]:
                _stop(host)  # not the provisioner: it is the caller, or already gone
            row.update(provisioning_state="Failed", error=error, instances=[None] * row["instance_count"])
            save_deployment(self._catalog, row)
            self._write_endpoint_file(files, endpoint_row(self._catalog, endpoint))

    def _same_revision(self, endpoint: str, row: dict, started: dict[int, subprocess.Popen]) -> dict | None:
        """The deployment's row as now stored, if it is still the revision ``row`` is; else None, and the hosts
        ``started`` for the older revision are stopped (the deployment was deleted or replaced meanwhile). Locked."""
        current = deployment_row(self._catalog, endpoint, row["name"])
        if current is not None and current["revision"] == row["revision"]:
            return current
        for process in started.values():
            stop_tree(process.pid)
        return None

    # -- files --------------------------------------------------------------------------------
    def _write_endpoint_file(self, files: EndpointFiles, row: dict | None) -> None:
        """``endpoint.json`` as the contract says: what the router reads. It holds the keys: 0600, replaced atomically."""
        if row is None:
            return
        deployments = {}
        for deployment in deployment_rows(self._catalog, row["name"]):
            ports = [host["port"] for host in deployment["instances"] if host and host.get("port")]
            if deployment["provisioning_state"] == "Succeeded" and ports:
                deployments[deployment["name"].lower()] = {
                    "instances": [f"127.0.0.1:{port}" for port in ports],
                    "max_concurrent_requests_per_instance": deployment["request_settings"]["max_concurrent_requests_per_instance"],
                    "request_timeout_ms": deployment["request_settings"]["request_timeout_ms"],
                    "max_body_bytes": MAX_BODY_BYTES,
                }
        document = {
            "name": row["name"],
            "auth_mode": row["auth_mode"],
            "credentials": [{"value": c["value"], "expires_at": c.get("expires_at")} for c in row["credentials"]],
            "traffic": row["traffic"],
            "mirror_traffic": row["mirror_traffic"],
            "deployments": deployments,
        }
        files.folder.mkdir(parents=True, exist_ok=True)
        _write_json(files.endpoint_json, document, mode=0o600)

    def _local(self, uri: str | None) -> str | None:
        return str(self._workspace.resolve_uri(uri)) if uri else None

    def _log(self, endpoint: str, deployment: str, line: str) -> None:
        """A line of what localml did, in the deployment's log beside its hosts' output."""
        path = self.files(endpoint).log(deployment)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as log:
            log.write(f"[localml] {time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    @contextmanager
    def _locked(self, files: EndpointFiles) -> Iterator[None]:
        files.folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(files.lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock; so does the kernel if this process is killed


def allocate_port(taken: set[int]) -> int:
    """A free port on 127.0.0.1 for a new endpoint's router, none of ``taken`` (other endpoints' ports, whose
    routers may be down just now). Chosen once: the endpoint's scoring_uri keeps it across restarts."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in taken:
            return port


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log ("" before it exists)."""
    if not path.exists() or lines <= 0:
        return ""
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])


def _log_excerpt(path: Path) -> str:
    text = tail(path, LOG_TAIL_LINES).strip()
    return f"Last lines of {path}:\n{text}" if text else f"Its log ({path}) is empty."


def _detached(command: list[str], log, env: dict[str, str], cwd: str | Path | None = None) -> subprocess.Popen:
    """A process in its own session, so it outlives the caller and a signal to the caller's group misses it."""
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True, close_fds=True)


def _localml_environment() -> dict[str, str]:
    """The environment of localml's own programs (router, provisioner): they import the localml that started them."""
    path = os.pathsep.join(filter(None, [str(LOCALML_SOURCE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _process_record(process: subprocess.Popen) -> dict:
    return {"pid": process.pid, "started": start_time(process.pid)}


def _alive(process: dict | None) -> bool:
    return process is not None and is_alive(process["pid"], process["started"])


def _stop(process: dict | None) -> None:
    if _alive(process):
        stop_tree(process["pid"])


def _stop_deployment(row: dict | None) -> None:
    """Stop a deployment's provisioner first, so it starts no host after its hosts were stopped, then its hosts."""
    for process in (row.get("provisioner"), *row["instances"]) if row else ():
        _stop(process)


def _answers(port: int, route: str, timeout: float) -> bool:
    """True when a host's probe route (``live``, ``ready``) answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{route}", timeout=timeout) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (writers replace atomically)
        return None


def _write_json(path: Path, document: dict, mode: int = 0o644) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(descriptor, mode)  # a partial file left by a killed writer of the same pid kept its own mode
    with os.fdopen(descriptor, "w") as out:
        json.dump(document, out, indent=2)
    os.replace(partial, path)


def main(argv: list[str]) -> None:
    root, endpoint, deployment = argv
    Supervisor(LocalWorkspace(root, name=Path(root).name)).provision(endpoint, deployment)


if __name__ == "__main__":
    main(sys.argv[1:])
