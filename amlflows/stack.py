"""``amlflows up`` / ``amlflows down``: the local stack that serves the deployments.

    Prefect server (SQLite, in $PREFECT_HOME, or .amlflows/prefect when it is not set)    http://127.0.0.1:4200
    work pool amlflows-local (process, deployments/process-pool.json)
    prefect deploy --all (prefect.yaml: every flow, the schedules, the drift trigger)
    a process worker on the pool
    MLflow UI on localml's tracking store               http://127.0.0.1:5000

Each background process writes its pid and log under ``.amlflows/``. Running ``up`` again starts only
what is not running, and deploying again updates the deployments in place, so nothing is duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

POOL = "amlflows-local"
POOL_TEMPLATE = Path("deployments/process-pool.json")
START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Stack:
    prefect_port: int = 4200
    mlflow_port: int = 5000
    #: localml's own choice (localml.client): $LOCALML_ROOT, else ./.localml
    localml_root: Path = field(default_factory=lambda: Path(os.environ.get("LOCALML_ROOT") or ".localml"))
    #: pids, logs and the Prefect server's database
    state: Path = Path(".amlflows")

    @property
    def prefect_home(self) -> Path:
        """The Prefect server's database and profiles: the user's PREFECT_HOME when set, else one of the stack's own."""
        home = os.environ.get("PREFECT_HOME")
        return Path(home).expanduser() if home else self.state / "prefect"

    @property
    def database(self) -> str:
        """Where the server keeps its state: the database the user named (password hidden), else SQLite in its home."""
        url = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
        if not url:
            return str(self.prefect_home / "prefect.db")
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_HOME": str(self.prefect_home.resolve()),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_CLI_PROMPT": "false",
            # an API call the server answers with 503 (on SQLite: the database was locked) says why in its log
            "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
            "LOCALML_ROOT": str(self.localml_root.resolve()),
            # the studio_url of every job points at this MLflow UI
            "LOCALML_MLFLOW_UI": f"http://127.0.0.1:{self.mlflow_port}",
        }

    def services(self) -> dict[str, list[str]]:
        bin_dir = Path(sys.executable).parent
        return {
            "prefect-server": [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
            "worker": [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            "mlflow-ui": [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{(self.localml_root / 'mlflow.db').resolve()}",
                          "--host", "127.0.0.1", "--port", str(self.mlflow_port)],
        }


def up(stack: Stack = Stack()) -> int:
    """Start what is not running, create the pool, deploy every flow; print where to look."""
    if not Path("prefect.yaml").is_file():
        print("amlflows up: run it from the repository root (where prefect.yaml is).", file=sys.stderr)
        return 2
    stack.state.mkdir(parents=True, exist_ok=True)
    from localml import LocalMLClient

    LocalMLClient(stack.localml_root)  # creates the workspace and its MLflow store if they are new
    env = stack.env()
    services = stack.services()
    _start(stack.state, "prefect-server", services["prefect-server"], env)
    _step(f"waiting for the Prefect server (its database: {stack.database})")
    _wait_for(f"{stack.api_url}/health", "the Prefect server", stack.state)
    _step(f"creating the work pool {POOL}")
    _prefect(env, "work-pool", "create", POOL, "--type", "process", "--base-job-template", str(POOL_TEMPLATE), "--overwrite")
    deployments = len(yaml.safe_load(Path("prefect.yaml").read_text())["deployments"])
    _step(f"deploying {deployments} flows from prefect.yaml with their schedules and triggers (prefect deploy --all, about a minute)")
    _prefect(env, "--no-prompt", "deploy", "--all")
    _start(stack.state, "worker", services["worker"], env)
    _start(stack.state, "mlflow-ui", services["mlflow-ui"], env)
    _wait_for(f"http://127.0.0.1:{stack.mlflow_port}/health", "the MLflow UI", stack.state)
    print(
        "\namlflows is up:\n"
        f"  Prefect UI   http://127.0.0.1:{stack.prefect_port}   (deployments, runs, the drift trigger under Automations)\n"
        f"  MLflow UI    http://127.0.0.1:{stack.mlflow_port}   (every job's run, metrics and artifacts)\n"
        f"  worker       pool {POOL}, logs in {stack.state}/worker.log\n"
        f"  database     {stack.database} (PREFECT_HOME, or PREFECT_API_DATABASE_CONNECTION_URL, puts it elsewhere)\n"
        f"\nRun a deployment:  PREFECT_API_URL={stack.api_url} prefect deployment run baseline/baseline\n"
        "Stop it all:       amlflows down\n"
    )
    return 0


def down(stack: Stack = Stack()) -> int:
    """Stop every process ``up`` started (worker first, so no flow run is picked up meanwhile)."""
    for name in ("worker", "mlflow-ui", "prefect-server"):
        pid = _pid(stack.state, name)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
            if not _ended(pid, STOP_TIMEOUT):
                os.killpg(pid, signal.SIGKILL)
                _ended(pid, STOP_TIMEOUT)  # a killed process still takes a moment to go, on a busy machine
        except ProcessLookupError:
            pass
        (stack.state / f"{name}.pid").unlink(missing_ok=True)
        print(f"stopped {name} (pid {pid})")
    print("amlflows is down (the Prefect database and the localml workspace are kept).")
    return 0


def status(stack: Stack = Stack()) -> dict[str, int | None]:
    """The pid of each service that is running, None for the others."""
    return {name: _pid(stack.state, name) for name in ("prefect-server", "worker", "mlflow-ui")}


def _start(state: Path, name: str, command: list[str], env: dict[str, str]) -> None:
    if (pid := _pid(state, name)) is not None:
        print(f"{name} is already running (pid {pid})")
        return
    with (state / f"{name}.log").open("a") as log:  # the service writes to its own copy of the file; ours closes
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (state / f"{name}.pid").write_text(json.dumps({"pid": process.pid, "command": command}))
    print(f"started {name} (pid {process.pid}, log {state / f'{name}.log'})")


def _pid(state: Path, name: str) -> int | None:
    """The pid in ``<name>.pid`` when that process is alive (a stale file from a crash is removed)."""
    path = state / f"{name}.pid"
    if not path.is_file():
        return None
    pid = json.loads(path.read_text())["pid"]
    if not _alive(pid):
        path.unlink(missing_ok=True)
        return None
    return pid


def _ended(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a process ended but not yet reaped by the one that started it)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _step(what: str) -> None:
    print(f"{what}...", flush=True)


def _wait_for(url: str, what: str, state: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"amlflows up: {what} did not answer at {url} in {START_TIMEOUT:.0f} s; see the logs in {state}/.")
            time.sleep(0.5)


def _prefect(env: dict[str, str], *args: str) -> None:
    command = [str(Path(sys.executable).parent / "prefect"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"amlflows up: `prefect {' '.join(args)}` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
