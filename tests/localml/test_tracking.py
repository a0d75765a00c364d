"""The workspace's MLflow store: made from MLflow's own empty database, once, whoever opens the workspace first."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
from mlflow.tracking import MlflowClient

from localml import LocalMLClient
from localml.tracking import Tracking


def test_a_new_workspace_gets_mlflows_schema_and_keeps_the_default_experiments_artifacts_inside(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow would put the Default experiment's artifacts under the working folder
    ml_client = LocalMLClient(tmp_path / "ws")

    mlflow_client = MlflowClient(tracking_uri=ml_client.mlflow_tracking_uri)  # checks the schema is MLflow's newest
    run = mlflow_client.create_run("0")
    mlflow_client.log_text(run.info.run_id, "kept", "note.txt")

    root = (tmp_path / "ws").resolve()
    assert list(root.glob(f"mlartifacts/0/{run.info.run_id}/artifacts/note.txt"))
    assert list(elsewhere.iterdir()) == []
    experiment_id = ml_client._workspace.tracking.experiment_id("sql-made")
    assert mlflow_client.get_experiment_by_name("sql-made").experiment_id == experiment_id
    assert mlflow_client.get_experiment(experiment_id).artifact_location == (root / "mlartifacts" / "sql-made").as_uri()


@pytest.mark.slow
def test_processes_opening_a_new_workspace_at_once_make_its_database_once(tmp_path):
    # a cache of their own: they race to build MLflow's empty database too, not only to copy it
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    root = tmp_path / "ws"
    script = f"from localml.tracking import Tracking; print(Tracking({str(root)!r}).experiment_id('together'))"
    processes = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one experiment, whoever created it
    with closing(sqlite3.connect(root / "mlflow.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM experiments WHERE name = 'together'").fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0] == 1
    assert sorted(p.name for p in root.iterdir()) == ["mlflow.db"]  # no partial copies left behind
    assert Tracking(root).experiment_id("together") == results[0][0].strip()
