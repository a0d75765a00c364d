"""The workspace's MLflow store: a SQLite tracking database and a local artifact folder.

As on Azure, a job's MLflow run id is the job's name, so user code that logs to
the active run (``MLFLOW_RUN_ID``) and the workspace that reads the job's
metrics agree on one run without a lookup table.

What every job does to its run (create it, store its artifacts, end it), and what a sweep reads and
writes of its trials' runs, is plain SQL on MLflow's tables (as MLflow 3.17 lays them out) and file
copies into its artifact folder: importing MLflow and opening its store takes seconds, longer than a
small job. A new workspace's database is a copy of MLflow's own empty one (see ``empty_store``).
MLflow itself is loaded for everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

from localml.store import immediate_transaction

DEFAULT_UI_URL = "http://127.0.0.1:5000"
#: The tag by which a job's MLflow 3 logged models name their job. MLflow links a logged model to a run only when
#: the script has an active run (``mlflow.start_run()``, or an ``mlflow.log_*`` call before ``log_model``); a script
#: that only calls ``log_model``, as many written for MLflow 2 do, makes a model of no run. A job's process gets
#: this tag in ``MLFLOW_RUN_CONTEXT`` (see ``run_context``), which MLflow puts on every model it creates there.
JOB_TAG = "localml.job"


def run_context(job_name: str, user_context: str | None) -> str:
    """``MLFLOW_RUN_CONTEXT`` for a job's process: the tags the job's own environment gives, and the job's."""
    return json.dumps({**json.loads(user_context or "{}"), JOB_TAG: job_name})


class Tracking:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.db_path = self.root / "mlflow.db"
        self.uri = f"sqlite:///{self.db_path}"
        self.artifact_root = self.root / "mlartifacts"
        self._client = None
        if not self.db_path.exists():
            self._create_store()

    def _create_store(self) -> None:
        """Give the workspace MLflow's database: a copy of an empty one, placed atomically.

        Several processes may open a new workspace at once (two runs started together): each prepares
        its own copy and the first link wins, so MLflow's migrations never run twice on one file.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".mlflow.db.{uuid.uuid4().hex}.partial"
        try:
            try:
                shutil.copyfile(empty_store(), partial)
            except OSError:  # no cache folder this user may write: MLflow makes this workspace's database itself
                _make_empty_store(partial)
            with closing(sqlite3.connect(partial, isolation_level=None)) as db:
                # MLflow puts the Default experiment's artifacts under the working folder of whoever made the database
                db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", ((self.artifact_root / "0").as_uri(),))
            try:
                os.link(partial, self.db_path)
            except FileExistsError:
                pass
        finally:
            partial.unlink(missing_ok=True)

    @property
    def client(self):
        """An ``MlflowClient`` bound to this store (imported lazily: mlflow is slow to import)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            # the registry named too: a registry URI set for the process (MLFLOW_REGISTRY_URI) is not the workspace's
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    @property
    def ui_url(self) -> str:
        return os.environ.get("LOCALML_MLFLOW_UI", DEFAULT_UI_URL).rstrip("/")

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created with its artifacts under the workspace root.

        As on Azure, submitting a job to a deleted experiment's name brings the experiment back.
        """
        with closing(self._connect()) as db, immediate_transaction(db):
            row = db.execute("SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (name,)).fetchone()
            now = _millis(time.time())
            if row is None:
                location = (self.artifact_root / name).resolve().as_uri()
                inserted = db.execute(
                    "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) "
                    "VALUES (?, ?, 'active', ?, ?)",
                    (name, location, now, now),
                )
                return str(inserted.lastrowid)
            if row[1] != "active":
                db.execute("UPDATE experiments SET lifecycle_stage = 'active', last_update_time = ? WHERE experiment_id = ?", (now, row[0]))
            return str(row[0])

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
        with closing(self._connect()) as db:
            row = db.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        return Path(row[0].removeprefix("file://")) if row else None

    def run_logged_models(self, run_id: str) -> list:
        """The MLflow 3 logged models (ready ones) that run ``run_id`` or its job's process logged, newest first."""
        experiment_id = self.client.get_run(run_id).info.experiment_id  # the run exists, so its id is safe to quote
        found = {
            model.model_id: model
            for condition in (f"source_run_id = '{run_id}'", f"tags.`{JOB_TAG}` = '{run_id}'")
            for model in self._search_logged_models(experiment_id, condition)
            if model.status == "READY"  # a model whose logging failed half-way has files missing
        }
        return sorted(found.values(), key=lambda model: model.creation_timestamp, reverse=True)

    def _search_logged_models(self, experiment_id: str, filter_string: str) -> Iterator:
        token = None
        while True:
            page = self.client.search_logged_models([experiment_id], filter_string=filter_string, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def logged_model(self, model_id: str):
        """MLflow 3 logged model ``model_id``; None when the store has no model of that id."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_logged_model(model_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """Copy a folder into the run's artifacts under ``artifact_path``, as MLflow's local artifact store does."""
        shutil.copytree(local_dir, self.artifact_dir(run_id) / artifact_path, dirs_exist_ok=True)

    # -- what a sweep reads and writes of its trials' runs ----------------------------------
    def metric_values(self, run_id: str, key: str) -> list[float]:
        """Every value of metric ``key`` the run logged, in step order."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT value FROM metrics WHERE run_uuid = ? AND key = ? ORDER BY step, timestamp", (run_id, key))
            return [row[0] for row in rows]

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Add parameters the run has not logged (MLflow's parameters are write-once)."""
        with closing(self._connect()) as db, immediate_transaction(db):
            db.executemany(
                "INSERT OR IGNORE INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                [(key, str(value)[:8000], run_id) for key, value in params.items()],
            )

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        with closing(self._connect()) as db, immediate_transaction(db):
            db.execute(
                "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?) ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                (key, value, run_id),
            )

    def log_metric(self, run_id: str, key: str, value: float) -> None:
        """Log one value at step 0; it becomes the run's latest value of ``key``, as in MLflow."""
        now = _millis(time.time())
        with closing(self._connect()) as db, immediate_transaction(db):
            db.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, 0, 0)", (key, value, now, run_id))
            db.execute(
                "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, 0, 0, ?) "
                "ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, step = 0 "
                "WHERE latest_metrics.step <= 0",
                (key, value, now, run_id),
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=60, isolation_level=None)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)


def _millis(seconds: float) -> int:
    return int(seconds * 1000)


def empty_store() -> Path:
    """MLflow's empty database for the installed MLflow, made once per machine in the user's cache folder.

    MLflow makes a new database by running its whole chain of schema migrations: 2-3 seconds, paid by
    every new workspace (every test, and a user's first run). A copy costs milliseconds.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "localml"
    template = cache / f"mlflow-{version('mlflow')}-empty.db"
    if not template.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".{template.name}.{uuid.uuid4().hex}.partial"
        try:
            _make_empty_store(partial)
            os.replace(partial, template)  # two processes may build it at once: the copies are alike
        finally:
            partial.unlink(missing_ok=True)
    return template


def _make_empty_store(path: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", default_artifact_root=str(path.parent / "mlruns"))
    store.engine.dispose()
