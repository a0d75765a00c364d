"""``amlflows up`` / ``amlflows down`` / ``amlflows status``: the local stack that serves the deployments.

    Prefect server (SQLite in $PREFECT_HOME, or .amlflows/prefect when it is not set)    http://127.0.0.1:4200
      or, with --database postgresql, on a PostgreSQL of the stack's own (.amlflows/postgres, 127.0.0.1:5433)
    work pool amlflows-local (process, deployments/process-pool.json)
    prefect deploy --all (prefect.yaml: every flow, the schedules, the drift and promotion triggers)
    process workers on the pool (one; --workers N for more)
    MLflow UI on localml's tracking store               http://127.0.0.1:5000

Each background process writes its pid and log under ``.amlflows/``. Running ``up`` again starts only
what is not running, and deploying again updates the deployments in place, so nothing is duplicated.
The database and the number of workers are remembered in ``.amlflows/stack.json``: a later ``up`` keeps them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from amlflows.postgres import PostgresCluster, PostgresUnavailable, postgres_env

POOL = "amlflows-local"
POOL_TEMPLATE = Path("deployments/process-pool.json")
START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
DATABASES = ("sqlite", "postgresql")
#: workers on one machine: more only queue for its cores
MAX_WORKERS = 16
#: the user's own database for the Prefect server, under either of Prefect's names for the setting
DATABASE_SETTINGS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


@dataclass(frozen=True)
class Stack:
    prefect_port: int = 4200
    mlflow_port: int = 5000
    postgres_port: int = 5433
    #: localml's own choice (localml.client): $LOCALML_ROOT, else ./.localml
    localml_root: Path = field(default_factory=lambda: Path(os.environ.get("LOCALML_ROOT") or ".localml"))
    #: pids, logs, the choices below, and the Prefect server's database
    state: Path = Path(".amlflows")
    database: Literal["sqlite", "postgresql"] = "sqlite"
    workers: int = 1

    def remembered(self, database: str | None = None, workers: int | None = None) -> "Stack":
        """This stack with the choices an earlier ``up`` saved, overridden by the ones given now."""
        saved = self.saved_choices()
        return dataclasses.replace(self, database=database or saved.get("database", self.database),
                                   workers=workers or saved.get("workers", self.workers))

    @property
    def choices_file(self) -> Path:
        return self.state / "stack.json"

    def saved_choices(self) -> dict:
        """The database and workers the last ``up`` started with (none before the first)."""
        return json.loads(self.choices_file.read_text()) if self.choices_file.is_file() else {}

    @property
    def prefect_home(self) -> Path:
        """The Prefect server's database and profiles: the user's PREFECT_HOME when set, else one of the stack's own."""
        home = os.environ.get("PREFECT_HOME")
        return Path(home).expanduser() if home else self.state / "prefect"

    @property
    def postgres(self) -> PostgresCluster:
        return PostgresCluster(self.state / "postgres", self.postgres_port)

    @property
    def database_shown(self) -> str:
        """Where the server keeps its state, password hidden: our PostgreSQL, the user's database, or SQLite."""
        if self.database == "postgresql":
            return self.postgres.url(hide_password=True)
        url = next((os.environ[name] for name in DATABASE_SETTINGS if os.environ.get(name)), None)
        if not url:
            return str(self.prefect_home / "prefect.db")
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def worker_names(self) -> list[str]:
        return ["worker", *(f"worker-{n}" for n in range(2, self.workers + 1))]

    def env(self) -> dict[str, str]:
        """What every process of the stack gets: the user's environment, but for the server's database."""
        return {
            **{name: value for name, value in os.environ.items() if name not in DATABASE_SETTINGS},
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

    def server_env(self) -> dict[str, str]:
        """The server's own environment: the only process that is given the database and its password (the
        workers, the flows they run and the jobs those submit never see it)."""
        if self.database == "postgresql":
            return {**self.env(), "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.postgres.url()}
        return {**self.env(), **{name: os.environ[name] for name in DATABASE_SETTINGS if name in os.environ}}

    def services(self) -> dict[str, list[str]]:
        bin_dir = Path(sys.executable).parent
        worker = [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
        return {
            # `prefect server start`, with SQLite's transactions begun IMMEDIATE (amlflows/prefect_server.py says why)
            "prefect-server": [sys.executable, "-m", "amlflows.prefect_server", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
            **{name: [*worker, "--name", f"amlflows-{name}"] for name in self.worker_names},
            "mlflow-ui": [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{(self.localml_root / 'mlflow.db').resolve()}",
                          "--host", "127.0.0.1", "--port", str(self.mlflow_port)],
        }


def up(stack: Stack = Stack()) -> int:
    """Start what is not running, create the pool, deploy every flow; print where to look."""
    if not Path("prefect.yaml").is_file():
        print("amlflows up: run it from the repository root (where prefect.yaml is).", file=sys.stderr)
        return 2
    if problem := _choice_problem(stack):
        print(f"amlflows up: {problem}", file=sys.stderr)
        return 2
    stack.state.mkdir(parents=True, exist_ok=True)
    stack.choices_file.write_text(json.dumps({"database": stack.database, "workers": stack.workers}))
    from localml import LocalMLClient

    workspace = LocalMLClient(stack.localml_root)  # creates the workspace and its MLflow store if they are new
    # endpoints outlive the stack; after a reboot their serving processes are gone and come back here
    serving = workspace.online_endpoints.restore_all()
    if stack.database == "postgresql":
        _start_postgres(stack)
    env = stack.env()
    services = stack.services()
    _start(stack.state, "prefect-server", services["prefect-server"], stack.server_env())
    _step(f"waiting for the Prefect server (its database: {stack.database_shown})")
    _wait_for(f"{stack.api_url}/health", "the Prefect server", stack.state)
    _step(f"creating the work pool {POOL}")
    _prefect(env, "work-pool", "create", POOL, "--type", "process", "--base-job-template", str(POOL_TEMPLATE), "--overwrite")
    deployments = len(yaml.safe_load(Path("prefect.yaml").read_text())["deployments"])
    _step(f"deploying {deployments} flows from prefect.yaml with their schedules and triggers (prefect deploy --all, about a minute)")
    _prefect(env, "--no-prompt", "deploy", "--all")
    for name in stack.worker_names:
        _start(stack.state, name, services[name], env)
    _stop_extra_workers(stack)
    _start(stack.state, "mlflow-ui", services["mlflow-ui"], env)
    _wait_for(f"http://127.0.0.1:{stack.mlflow_port}/health", "the MLflow UI", stack.state)
    workers = f"{stack.workers} worker{'s' if stack.workers > 1 else ''}"
    print(
        "\namlflows is up:\n"
        f"  Prefect UI   http://127.0.0.1:{stack.prefect_port}   (deployments, runs, the drift and promotion triggers under Automations)\n"
        f"  MLflow UI    http://127.0.0.1:{stack.mlflow_port}   (every job's run, metrics and artifacts)\n"
        f"  workers      {workers} on pool {POOL}, logs in {stack.state}/worker*.log\n"
        f"  database     {stack.database_shown}\n"
        f"  endpoints    {', '.join(serving) or 'none yet'}\n"
        f"\nRun a deployment:  PREFECT_API_URL={stack.api_url} prefect deployment run baseline/baseline\n"
        "Stop it all:       amlflows down\n"
    )
    return 0


def _choice_problem(stack: Stack) -> str | None:
    """What is wrong with the database and worker choices, before anything starts."""
    if stack.database not in DATABASES:
        return f"--database must be one of {', '.join(DATABASES)}, not {stack.database!r}."
    if not isinstance(stack.workers, int) or not 1 <= stack.workers <= MAX_WORKERS:
        return f"--workers must be a whole number from 1 to {MAX_WORKERS}, not {stack.workers!r}."
    if stack.database == "postgresql" and (setting := next((n for n in DATABASE_SETTINGS if os.environ.get(n)), None)):
        return (f"{setting} names a database of your own, and --database postgresql would start another: "
                f"unset {setting} to use the stack's PostgreSQL, or leave out --database to use yours.")
    running = _running_database(stack)
    if running is not None and running != stack.database:
        return (f"the Prefect server is running on {running}; stop the stack first (amlflows down), "
                f"then run amlflows up --database {stack.database}.")
    return None


def _running_database(stack: Stack) -> str | None:
    """The database the running server was started on (the choice saved when it started), None when none runs."""
    if _pid(stack.state, "prefect-server") is None:
        return None
    return stack.saved_choices().get("database", "sqlite")


def _start_postgres(stack: Stack) -> None:
    try:
        if stack.postgres.initialise():
            _step(f"made a PostgreSQL cluster in {stack.postgres.root} (its password in {stack.postgres.connection_file.name}, "
                  "readable by you only)")
        _start(stack.state, "postgres", stack.postgres.server_command(), postgres_env())
        _step(f"waiting for PostgreSQL on 127.0.0.1:{stack.postgres_port}")
        stack.postgres.wait_and_create_database()
    except PostgresUnavailable as error:
        raise SystemExit(f"amlflows up: {error}") from None


def _stop_extra_workers(stack: Stack) -> None:
    """Workers an earlier ``up --workers N`` started beyond the number asked for now."""
    for path in sorted(stack.state.glob("worker-*.pid")):
        if path.stem not in stack.worker_names:
            _stop(stack.state, path.stem)


def down(stack: Stack = Stack()) -> int:
    """Stop every process ``up`` started: workers first, so no flow run is picked up meanwhile; the database last."""
    for name in _started(stack.state):
        _stop(stack.state, name)
    print("amlflows is down (the Prefect database and the localml workspace are kept; online endpoints keep serving "
          "until ml_client.online_endpoints.begin_delete).")
    return 0


def status(stack: Stack = Stack()) -> dict[str, int | None]:
    """The pid of each service that is running, None for the others."""
    database = ["postgres"] if stack.database == "postgresql" else []
    names = dict.fromkeys(["prefect-server", *stack.worker_names, "mlflow-ui", *database, *_started(stack.state)])
    return {name: _pid(stack.state, name) for name in names}


def _started(state: Path) -> list[str]:
    """The services with a pid file, in the order they are stopped."""
    order = {"mlflow-ui": 1, "prefect-server": 2, "postgres": 3}  # workers: 0
    return sorted((p.stem for p in state.glob("*.pid")), key=lambda name: (order.get(name, 0), name))


def _stop(state: Path, name: str) -> None:
    pid = _pid(state, name)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
            if not _ended(pid, STOP_TIMEOUT):
                os.killpg(pid, signal.SIGKILL)
                _ended(pid, STOP_TIMEOUT)  # a killed process still takes a moment to go, on a busy machine
        except ProcessLookupError:
            pass
        print(f"stopped {name} (pid {pid})")
    (state / f"{name}.pid").unlink(missing_ok=True)


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
