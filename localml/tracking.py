"""The workspace's MLflow store: a SQLite tracking database and a local artifact folder.

As on Azure, a job's MLflow run id is the job's name, so user code that logs to
the active run (``MLFLOW_RUN_ID``) and the workspace that reads the job's
metrics agree on one run without a lookup table.

What every job does to its run (create it, store its artifacts, end it) is plain SQL on MLflow's
``experiments``, ``runs`` and ``tags`` tables (as MLflow 3.17 lays them out) and file copies into its
artifact folder: importing MLflow and opening its store takes seconds, longer than a small job.
MLflow itself is loaded to make its tables and a new experiment, and for everything else.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from localml.store import immediate_transaction

DEFAULT_UI_URL = "http://127.0.0.1:5000"


class Tracking:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.db_path = self.root / "mlflow.db"
        self.uri = f"sqlite:///{self.db_path}"
        self.artifact_root = self.root / "mlartifacts"
        self._client = None

    @property
    def client(self):
        """An ``MlflowClient`` bound to this store (imported lazily: mlflow is slow to import)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            # the registry named too: a registry URI set for the process (MLFLOW_REGISTRY_URI) is not the workspace's
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    @property
    def registry_store(self):
        """The model registry's store (made on first use, with MLflow's tables if the database has none)."""
        return self.client._get_registry_client().store

    @property
    def ui_url(self) -> str:
        return os.environ.get("LOCALML_MLFLOW_UI", DEFAULT_UI_URL).rstrip("/")

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created with its artifacts under the workspace root."""
        from_sql = self._active_experiment_id(name)
        if from_sql is not None:
            return from_sql
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.artifact_root / name).resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:
            # another process created it between our lookup and our insert
            return self.client.get_experiment_by_name(name).experiment_id

    def _active_experiment_id(self, name: str) -> str | None:
        """The id of an active experiment ``name``; None when there is none yet (or no MLflow tables)."""
        if not self.db_path.exists():  # connecting would create an empty file
            return None
        try:
            with closing(self._connect()) as db:
                row = db.execute(
                    "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'", (name,)
                ).fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return None
            raise
        return str(row[0]) if row else None

    @classmethod
    def for_uri(cls, tracking_uri: str) -> "Tracking":
        """The store behind a localml tracking URI (``sqlite:///<root>/mlflow.db``), as a job sees it."""
        return cls(Path(tracking_uri.removeprefix("sqlite:///")).parent)

    def create_run(
        self,
        run_id: str,
        run_name: str,
        tags: dict[str, str],
        *,
        experiment_name: str | None = None,
        experiment_id: str | None = None,
        start_time: float | None = None,
    ) -> str:
        """Create the run ``run_id`` (MLflow's API has no way to choose the id) and return its experiment id."""
        experiment_id = experiment_id or self.experiment_id(experiment_name)
        with closing(self._connect()) as db, immediate_transaction(db):
            (location,) = db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = ?", (int(experiment_id),)).fetchone()
            db.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, "
                "source_version, lifecycle_stage, artifact_uri, experiment_id) "
                "VALUES (?, ?, 'JOB', '', '', ?, 'SCHEDULED', ?, '', 'active', ?, ?)",
                (
                    run_id, run_name, os.environ.get("USER", "localml"), _millis(start_time or time.time()),
                    f"{location}/{run_id}/artifacts", int(experiment_id),
                ),
            )
            db.executemany(
                "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                [(key, value, run_id) for key, value in {**tags, "mlflow.runName": run_name}.items()],
            )
        return experiment_id

    def end_run(self, run_id: str, job_status: str) -> None:
        """Close the job's run with the MLflow status matching the job's final status."""
        status = {"Completed": "FINISHED", "Canceled": "KILLED"}.get(job_status, "FAILED")
        with closing(self._connect()) as db, immediate_transaction(db):
            db.execute("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?", (status, _millis(time.time()), run_id))

    def artifact_dir(self, run_id: str) -> Path | None:
        """The folder of run ``run_id``'s artifacts (the store keeps them on this machine); None when there is no such run."""
        if not self.db_path.exists():
            return None
        with closing(self._connect()) as db:
            row = db.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        return Path(row[0].removeprefix("file://")) if row else None

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """Copy a folder into the run's artifacts under ``artifact_path``, as MLflow's local artifact store does."""
        shutil.copytree(local_dir, self.artifact_dir(run_id) / artifact_path, dirs_exist_ok=True)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=60, isolation_level=None)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)


def _millis(seconds: float) -> int:
    return int(seconds * 1000)
