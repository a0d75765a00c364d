"""The workspace's MLflow model registry, kept in step with ``ml_client.models``.

On Azure the workspace's model registry is MLflow's: ``mlflow.register_model`` and ``ml_client.models`` see
the same versions. localml keeps its own catalog (it holds what MLflow cannot: a version's type, versions
that are not numbers, a copy of the files), and this module keeps MLflow's registry in step with it:

- The catalog is authoritative. Every catalog version that is a whole number is in MLflow's registry under
  the same number, with its description, tags and stage, its source pointing at the stored files and its
  run the job it came from. A version like "v1" or "2024.1" stays in the catalog only: MLflow numbers
  versions 1, 2, ..., and any number given to it would be one the other side could hand out again.
- Both sides number a new version max + 1 over the numbers they hold. A catalog registration claims its
  number in MLflow first (inside the catalog's write transaction), and MLflow refuses a number it holds, so
  whichever registration takes a number first, through ``ml_client.models`` or through MLflow, owns it on
  both sides: the numbers cannot diverge.
- A version registered through MLflow is imported into the catalog when the catalog is next read, its files
  copied in. Processes importing the same version at once each copy (uploads are content-addressed), and the
  catalog's transaction stores it once. From then on the catalog is authoritative for it too: changes made
  through ``ml_client.models`` reach MLflow, changes made through MLflow (tags, stage, deletion) are not
  brought back. A version deleted in MLflow keeps its number retired there and stays in the catalog.
- An archived version has MLflow's own stage "Archived" (not a tag, so its tags read the same on both
  sides); restoring it gives back its stage if that is one of MLflow's, else "None".
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Iterator

from localml.store import immediate_transaction
from localml.tracking import Tracking

#: The stage MLflow gives a deleted version: it keeps the row, so the number is never handed out again.
DELETED_STAGE = "Deleted_Internal"
ARCHIVED_STAGE = "Archived"
MLFLOW_STAGES = ("None", "Staging", "Production", ARCHIVED_STAGE)


def registry_number(version: str) -> int | None:
    """The MLflow version number that stands for catalog version ``version``; None when MLflow cannot hold it."""
    if version.isdigit() and version == str(int(version)) and int(version) > 0:
        return int(version)
    return None


def mlflow_stage(stage: str | None, archived: bool) -> str:
    """MLflow's stage for a catalog version: Azure's stage is free text, MLflow knows four."""
    if archived:
        return ARCHIVED_STAGE
    canonical = {s.lower(): s for s in MLFLOW_STAGES}
    return canonical.get(str(stage or "None").lower(), "None")


def catalog_stage(current_stage: str) -> tuple[str | None, bool]:
    """The catalog's (stage, archived) for a version read from MLflow."""
    return (current_stage if current_stage in ("Staging", "Production") else None), current_stage == ARCHIVED_STAGE


@dataclass(frozen=True)
class RegistryVersion:
    """A model version as MLflow's registry holds it."""

    name: str
    number: int
    source: str
    run_id: str | None
    description: str | None
    tags: dict[str, str]
    stage: str


class ModelRegistry:
    """MLflow's registry tables, read and written as plain SQLite.

    Every ``models.get`` looks here and every registration writes here, and importing MLflow takes seconds:
    plain SQL on the three tables (``registered_models``, ``model_versions``, ``model_version_tags``, as
    MLflow 3.17 lays them out) keeps both instant. MLflow itself is loaded only to read a version registered
    through it.
    """

    def __init__(self, tracking: Tracking):
        self._tracking = tracking
        self._db = tracking.root / "mlflow.db"
        # one read connection, kept: opening one parses MLflow's schema (200-odd tables and indexes), about 2 ms
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    def numbers(self, name: str | None = None) -> dict[tuple[str, str], bool]:
        """Every (name, version) MLflow holds, deleted ones too, each with whether it is ready to import."""
        query, args = "SELECT name, version, current_stage, status FROM model_versions", ()
        if name is not None:
            query, args = query + " WHERE name = ?", (name,)
        rows = self._read(query, args)
        return {(n, str(v)): stage != DELETED_STAGE and status == "READY" for n, v, stage, status in rows}

    def claim(self, version: RegistryVersion) -> bool:
        """Create ``version`` under its own number; False when MLflow already holds that number.

        (MLflow's API cannot choose a number: it always takes the next one itself.)
        """
        try:
            with self._transaction() as db:
                self._insert(db, version)
        except sqlite3.IntegrityError:
            return False
        return True

    def update(self, version: RegistryVersion) -> None:
        """Give MLflow's version the description, tags and stage of ``version``; create it when MLflow lacks it."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT current_stage FROM model_versions WHERE name = ? AND version = ?", (version.name, version.number)
            ).fetchone()
            if row is None:  # registered before the registry was kept in step
                self._insert(db, version)
                return
            if row[0] == DELETED_STAGE:  # deleted through MLflow, which keeps the number retired
                return
            db.execute(
                "UPDATE model_versions SET description = ?, current_stage = ?, last_updated_time = ? WHERE name = ? AND version = ?",
                (version.description, version.stage, _now(), version.name, version.number),
            )
            db.execute("DELETE FROM model_version_tags WHERE name = ? AND version = ?", (version.name, version.number))
            self._insert_tags(db, version)
            db.execute("UPDATE registered_models SET last_updated_time = ? WHERE name = ?", (_now(), version.name))

    def read(self, name: str, version: str):
        """MLflow's model version and the URI of its files (a logged model's folder for a ``models:/`` source)."""
        client = self._tracking.client
        return client.get_model_version(name, version), client.get_model_version_download_uri(name, version)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self._db, timeout=60, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            with immediate_transaction(db):
                yield db

    def _read(self, query: str, args: tuple = ()) -> list[tuple]:
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(f"{self._db.as_uri()}?mode=ro", uri=True, timeout=60, check_same_thread=False)
                weakref.finalize(self, self._reader.close)
            return self._reader.execute(query, args).fetchall()

    def _insert(self, db: sqlite3.Connection, version: RegistryVersion) -> None:
        now = _now()
        db.execute(
            "INSERT OR IGNORE INTO registered_models (name, creation_time, last_updated_time) VALUES (?, ?, ?)",
            (version.name, now, now),
        )
        db.execute("UPDATE registered_models SET last_updated_time = ? WHERE name = ?", (now, version.name))
        # a run that is not in this store (a job_name given by hand) would be a dead link in the UI
        run_id = version.run_id if version.run_id and db.execute(
            "SELECT 1 FROM runs WHERE run_uuid = ?", (version.run_id,)
        ).fetchone() else None
        db.execute(
            "INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, current_stage, "
            "source, storage_location, run_id, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'READY')",
            (version.name, version.number, now, now, version.description, version.stage, version.source, version.source, run_id),
        )
        self._insert_tags(db, version)

    @staticmethod
    def _insert_tags(db: sqlite3.Connection, version: RegistryVersion) -> None:
        db.executemany(
            "INSERT INTO model_version_tags (key, value, name, version) VALUES (?, ?, ?, ?)",
            [(key, value, version.name, version.number) for key, value in version.tags.items()],
        )


def _now() -> int:
    return int(time.time() * 1000)
