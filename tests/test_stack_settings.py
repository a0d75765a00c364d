"""Where `amlflows up` keeps the Prefect server's state, and what it says of it (no server started here: the
e2e tests start one)."""

from pathlib import Path

from amlflows.stack import Stack


def test_the_server_keeps_its_sqlite_database_in_the_user_s_prefect_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    stack = Stack(state=tmp_path / "state")
    assert stack.database == str(tmp_path / "home" / "prefect.db")
    assert stack.env()["PREFECT_HOME"] == str((tmp_path / "home").resolve())


def test_without_a_prefect_home_the_stack_keeps_one_of_its_own(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_HOME")
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    assert Stack(state=tmp_path / "state").prefect_home == tmp_path / "state" / "prefect"


def test_a_database_the_user_names_is_shown_without_its_password(monkeypatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://team:s3cret@db.internal:5432/prefect")
    stack = Stack()
    assert stack.database == "postgresql+asyncpg://team:***@db.internal:5432/prefect"
    assert "s3cret" not in stack.database and stack.env()["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("/prefect")


def test_the_stack_serves_the_workspace_localml_root_names(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALML_ROOT", str(tmp_path / "team-workspace"))
    stack = Stack(state=tmp_path / "state")
    assert stack.env()["LOCALML_ROOT"] == str((tmp_path / "team-workspace").resolve())
    assert f"sqlite:///{(tmp_path / 'team-workspace' / 'mlflow.db').resolve()}" in stack.services()["mlflow-ui"]
    monkeypatch.delenv("LOCALML_ROOT")
    assert Stack().localml_root == Path(".localml")
