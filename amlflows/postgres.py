"""The stack's own PostgreSQL, for ``amlflows up --database postgresql``: the database a team runs Prefect's
server on, where many workers and flow runs write at once (SQLite locks the whole database for each write).

The cluster lives in ``.amlflows/postgres/``: ``data/`` (made by ``initdb`` the first time), the server's
socket, and ``connection.json`` with the generated password (readable by its owner only). The server
listens on 127.0.0.1 only and asks for that password (SCRAM), so nothing else on the network reaches it.

PostgreSQL refuses to run as root. Started by root (a container, a CI machine), its programs run in a user
namespace of their own, where they are an ordinary user who owns the cluster's files.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from glob import glob
from pathlib import Path

USER = "amlflows"
DATABASE = "prefect"
READY_TIMEOUT = 60.0


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are not on this machine, or its cluster could not be made."""


@dataclass(frozen=True)
class PostgresCluster:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def connection_file(self) -> Path:
        return self.root / "connection.json"

    def initialise(self) -> bool:
        """Make the cluster and its password the first time; True when it was made now."""
        if (self.data / "PG_VERSION").is_file():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data, ignore_errors=True)  # what a killed initdb left
        password = secrets.token_urlsafe(24)
        password_file = self.root / "initdb-password"
        _write_private(password_file, password)
        try:
            _run(self.root, [_program("initdb"), "--pgdata", str(self.data), "--username", USER, "--pwfile", str(password_file),
                             "--auth", "scram-sha-256", "--encoding", "UTF8", "--no-instructions"])
        finally:
            password_file.unlink(missing_ok=True)
        _write_private(self.connection_file, json.dumps({"user": USER, "password": password, "database": DATABASE}))
        return True

    def server_command(self) -> list[str]:
        """``postgres`` on this cluster, on loopback, its socket in the cluster's folder (not /var/run)."""
        return [*_unprivileged(), _program("postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(self.root.resolve())]

    def url(self, hide_password: bool = False) -> str:
        """The SQLAlchemy URL Prefect's server connects with."""
        connection = json.loads(self.connection_file.read_text())
        password = "***" if hide_password else connection["password"]
        return f"postgresql+asyncpg://{connection['user']}:{password}@127.0.0.1:{self.port}/{connection['database']}"

    def wait_and_create_database(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the server takes connections, then create Prefect's database if it is not there yet."""
        asyncio.run(self._wait_and_create_database(timeout))

    async def _wait_and_create_database(self, timeout: float) -> None:
        import asyncpg

        connection = json.loads(self.connection_file.read_text())
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin = await asyncpg.connect(host="127.0.0.1", port=self.port, user=connection["user"],
                                              password=connection["password"], database="postgres", timeout=5)
                break
            except (OSError, asyncpg.CannotConnectNowError, asyncio.TimeoutError):
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"PostgreSQL did not take connections on 127.0.0.1:{self.port} in {timeout:.0f} s; "
                                              f"see its log, postgres.log, beside {self.root}.") from None
                await asyncio.sleep(0.3)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", connection["database"]):
                await admin.execute(f'CREATE DATABASE "{connection["database"]}"')
        finally:
            await admin.close()


def _program(name: str) -> str:
    """A PostgreSQL server program: on the PATH, or where Debian's and Ubuntu's packages put it."""
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise PostgresUnavailable(
            f"`amlflows up --database postgresql` needs PostgreSQL's server programs ({name} was not found): "
            "install them (make postgresql, or apt-get install postgresql) and run it again, "
            "or leave out --database to use SQLite."
        )
    return found


def _unprivileged() -> list[str]:
    """The prefix that runs a program as an ordinary user when we are root: a user namespace of its own, where
    files owned by root look owned by that user, so the cluster's files stay ours."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PostgresUnavailable("PostgreSQL refuses to run as root, and `unshare` (util-linux) is not here to run it as "
                                  "an ordinary user: run `amlflows up` as an ordinary user, or install util-linux.")
    return [unshare, "--user"]


def postgres_env() -> dict[str, str]:
    """PostgreSQL's programs in the C locale: the one every machine has, whatever the user's terminal says."""
    return {**os.environ, "LC_ALL": "C"}


def _run(root: Path, command: list[str]) -> None:
    result = subprocess.run([*_unprivileged(), *command], capture_output=True, text=True, env=postgres_env())
    if result.returncode != 0:
        raise PostgresUnavailable(f"`{Path(command[0]).name}` failed in {root}:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")


def _write_private(path: Path, text: str) -> None:
    """A file only its owner can read, from its first byte (a secret never sits in a readable file)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
