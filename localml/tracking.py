"""The workspace's MLflow store: a SQLite tracking database and a local artifact folder.

As on Azure, a job's MLflow run id is the job's name, so user code that logs to
the active run (``MLFLOW_RUN_ID``) and the workspace that reads the job's
metrics agree on one run without a lookup table.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DEFAULT_UI_URL = "http://127.0.0.1:5000"


class Tracking:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
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
        from mlflow.entities import RunStatus, SourceType
        from mlflow.entities.lifecycle_stage import LifecycleStage
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore, SqlRun, SqlTag
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        experiment_id = experiment_id or self.experiment_id(experiment_name)
        store: SqlAlchemyStore = self.client._tracking_client.store
        experiment = store.get_experiment(experiment_id)
        with store.ManagedSessionMaker(read_only=False) as session:
            run = SqlRun(
                name=run_name,
                artifact_uri=f"{experiment.artifact_location}/{run_id}/artifacts",
                run_uuid=run_id,
                experiment_id=experiment_id,
                source_type=SourceType.to_string(SourceType.JOB),
                source_name="",
                entry_point_name="",
                user_id=os.environ.get("USER", "localml"),
                status=RunStatus.to_string(RunStatus.SCHEDULED),
                start_time=int((start_time or time.time()) * 1000),
                end_time=None,
                deleted_time=None,
                source_version="",
                lifecycle_stage=LifecycleStage.ACTIVE,
            )
            run.tags = [SqlTag(key=key, value=value) for key, value in {**tags, MLFLOW_RUN_NAME: run_name}.items()]
            session.add(run)
        return experiment_id

    def end_run(self, run_id: str, job_status: str) -> None:
        """Close the job's run with the MLflow status matching the job's final status."""
        status = {"Completed": "FINISHED", "Canceled": "KILLED"}.get(job_status, "FAILED")
        self.client.set_terminated(run_id, status=status)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)
