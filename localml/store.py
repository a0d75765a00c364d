"""The workspace catalog: one SQLite file holding assets, named resources and jobs.

Several processes use it at once (the caller, each job's runner), so every
connection runs in WAL mode with a generous busy timeout, and every write is a
short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    kind TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    seq INTEGER NOT NULL, created_at REAL NOT NULL, archived INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, created_at REAL NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, seq INTEGER NOT NULL, created_at REAL NOT NULL,
    compute TEXT NOT NULL, status TEXT NOT NULL, parent TEXT,
    pid INTEGER, pid_started REAL, started_at REAL, ended_at REAL,
    error TEXT, spec TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (operation TEXT PRIMARY KEY, raised INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS operation_calls (operation TEXT PRIMARY KEY, calls INTEGER NOT NULL);
"""

#: With WAL, NORMAL never corrupts the database and loses no commit when a process dies (kill -9 included); only
#: a power cut or an OS crash can roll back the last commits. FULL syncs the disk at every commit, about 5 ms
#: each (more on a busy disk), and a job commits a dozen times (its statuses, its MLflow run).
SYNCHRONOUS = "NORMAL"

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})
ACTIVE_STATUSES = frozenset({"Preparing", "Running", "Finalizing", "CancelRequested"})


class Catalog:
    """Rows of the workspace, stored as JSON records keyed like Azure's resources."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('workspace_id', ?)",
                (uuid.uuid4().hex,),
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            db.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
            yield db
        finally:
            db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction, so read-then-write steps do not race."""
        with self._connect() as db, immediate_transaction(db):
            yield db

    @property
    def workspace_id(self) -> str:
        with self._connect() as db:
            return db.execute("SELECT value FROM meta WHERE key='workspace_id'").fetchone()[0]

    # -- versioned assets -------------------------------------------------------------
    def next_version(self, db: sqlite3.Connection, kind: str, name: str) -> str:
        rows = db.execute("SELECT version FROM assets WHERE kind=? AND name=?", (kind, name))
        numbers = [int(r[0]) for r in rows if r[0].isdigit()]
        return str(max(numbers, default=0) + 1)

    def insert_asset(
        self, db: sqlite3.Connection, kind: str, name: str, version: str, record: dict, archived: bool = False
    ) -> None:
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM assets").fetchone()[0]
        db.execute(
            "INSERT INTO assets (kind, name, version, seq, created_at, archived, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, name, version, seq, time.time(), int(archived), json.dumps(record)),
        )

    def update_asset(self, db: sqlite3.Connection, kind: str, name: str, version: str, record: dict) -> None:
        db.execute("UPDATE assets SET record=? WHERE kind=? AND name=? AND version=?", (json.dumps(record), kind, name, version))

    def get_asset(self, kind: str, name: str, version: str | None = None, db: sqlite3.Connection | None = None) -> dict | None:
        """The record of one version, or of the newest active version when ``version`` is None."""
        query = "SELECT * FROM assets WHERE kind=? AND name=?"
        args: tuple = (kind, name)
        if version is None:
            query += " AND archived=0 ORDER BY seq DESC LIMIT 1"
        else:
            query += " AND version=?"
            args += (version,)
        rows = self._query(query, args, db)
        return _asset_record(rows[0]) if rows else None

    def list_assets(
        self, kind: str, name: str | None = None, include_archived: bool = False, db: sqlite3.Connection | None = None
    ) -> list[dict]:
        query = "SELECT * FROM assets WHERE kind=?"
        args: tuple = (kind,)
        if name is not None:
            query += " AND name=?"
            args += (name,)
        if not include_archived:
            query += " AND archived=0"
        return [_asset_record(r) for r in self._query(query + " ORDER BY seq", args, db)]

    def set_archived(self, db: sqlite3.Connection, kind: str, name: str, version: str | None, archived: bool) -> int:
        if version is None:
            cur = db.execute("UPDATE assets SET archived=? WHERE kind=? AND name=?", (int(archived), kind, name))
        else:
            cur = db.execute(
                "UPDATE assets SET archived=? WHERE kind=? AND name=? AND version=?",
                (int(archived), kind, name, version),
            )
        return cur.rowcount

    def _query(self, query: str, args: tuple, db: sqlite3.Connection | None) -> list[sqlite3.Row]:
        """Rows of ``query``, inside the caller's transaction when one is given."""
        if db is not None:
            return db.execute(query, args).fetchall()
        with self._connect() as conn:
            return conn.execute(query, args).fetchall()

    # -- unversioned resources (compute targets, datastores) --------------------------
    def put_resource(self, kind: str, name: str, record: dict) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO resources (kind, name, created_at, record) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, name) DO UPDATE SET record=excluded.record",
                (kind, name, time.time(), json.dumps(record)),
            )

    def get_resource(self, kind: str, name: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT record FROM resources WHERE kind=? AND name=?", (kind, name)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_resource(self, kind: str, name: str) -> bool:
        """Remove a resource; False when there was none of that name."""
        with self.transaction() as db:
            return db.execute("DELETE FROM resources WHERE kind=? AND name=?", (kind, name)).rowcount > 0

    def list_resources(self, kind: str) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT record FROM resources WHERE kind=? ORDER BY created_at", (kind,))
            return [json.loads(r[0]) for r in rows]

    # -- jobs ----------------------------------------------------------------------------
    def insert_job(self, name: str, compute: str, spec: dict, record: dict, parent: str | None = None) -> bool:
        """Record a new NotStarted job; False (and nothing written) when a job of that name exists.

        The insert is the name's reservation: it runs under SQLite's write lock (BEGIN IMMEDIATE), so of several
        processes submitting the same name at once exactly one gets True, and only that one goes on to create
        the job's MLflow run and start its runner.
        """
        with self.transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            inserted = db.execute(
                "INSERT INTO jobs (name, seq, created_at, compute, status, parent, spec, record) "
                "VALUES (?, ?, ?, ?, 'NotStarted', ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, seq, time.time(), compute, parent, json.dumps(spec), json.dumps(record)),
            ).rowcount
        return inserted == 1

    def get_job(self, name: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE name=?", (name,)).fetchone()
        return _job_row(row) if row else None

    def list_jobs(self, parent: str | None = None) -> list[dict]:
        query, args = "SELECT * FROM jobs WHERE parent IS NULL", ()
        if parent is not None:
            query, args = "SELECT * FROM jobs WHERE parent=?", (parent,)
        with self._connect() as db:
            return [_job_row(r) for r in db.execute(query + " ORDER BY seq", args)]

    def update_job(self, name: str, db: sqlite3.Connection | None = None, only_if_active: bool = False, **fields: Any) -> bool:
        """Set columns of a job; with ``only_if_active`` a job already terminal is left alone."""
        if "record" in fields:
            fields["record"] = json.dumps(fields["record"])
        assignments = ", ".join(f"{key}=?" for key in fields)
        query = f"UPDATE jobs SET {assignments} WHERE name=?"
        if only_if_active:
            query += " AND status NOT IN ('Completed', 'Failed', 'Canceled')"
        args = (*fields.values(), name)
        if db is not None:
            return db.execute(query, args).rowcount > 0
        with self.transaction() as conn:
            return conn.execute(query, args).rowcount > 0

    def end_unstarted_job(self, name: str, created_before: float, status: str, error: str | None) -> bool:
        """End a job whose runner never started (no pid) and that was recorded before ``created_before``.

        One statement, so it cannot undo a submitter that records its runner's pid at the same moment:
        either the pid is there and the job is left alone, or the job ends and the submitter's pid update
        (``only_if_active``) finds it terminal.
        """
        with self.transaction() as db:
            return db.execute(
                "UPDATE jobs SET status=?, error=?, ended_at=? WHERE name=? AND pid IS NULL AND created_at < ? "
                "AND status NOT IN ('Completed', 'Failed', 'Canceled')",
                (status, error, time.time(), name, created_before),
            ).rowcount > 0

    # -- fault injection counters ------------------------------------------------------
    def count_fault(self, operation: str, limit: int) -> bool:
        """Record one injected fault for ``operation``; False once ``limit`` have been raised."""
        with self.transaction() as db:
            row = db.execute("SELECT raised FROM faults WHERE operation=?", (operation,)).fetchone()
            raised = row[0] if row else 0
            if raised >= limit:
                return False
            db.execute(
                "INSERT INTO faults (operation, raised) VALUES (?, 1) "
                "ON CONFLICT (operation) DO UPDATE SET raised=raised + 1",
                (operation,),
            )
            return True

    def faults_raised(self, operation: str) -> int:
        with self._connect() as db:
            row = db.execute("SELECT raised FROM faults WHERE operation=?", (operation,)).fetchone()
        return row[0] if row else 0

    def count_call(self, operation: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO operation_calls (operation, calls) VALUES (?, 1) "
                "ON CONFLICT (operation) DO UPDATE SET calls=calls + 1",
                (operation,),
            )

    def operations_called(self) -> dict[str, int]:
        """How often each operation was called while ``LOCALML_RECORD_OPERATIONS`` was set."""
        with self._connect() as db:
            return dict(db.execute("SELECT operation, calls FROM operation_calls ORDER BY operation"))


def _asset_record(row: sqlite3.Row) -> dict:
    record = json.loads(row["record"])
    record.update(name=row["name"], version=row["version"], created_at=row["created_at"], archived=bool(row["archived"]))
    return record


def _job_row(row: sqlite3.Row) -> dict:
    job = dict(row)
    job["spec"] = json.loads(job["spec"])
    job["record"] = json.loads(job["record"])
    return job


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Take SQLite's write lock up front, so no other writer slips in between a read and the write it decides."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
