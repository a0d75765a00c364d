"""Where `amlflows up` keeps the Prefect server's state, and what it says of it (no server started here: the
e2e tests start one)."""

import dataclasses
import json
import os
from pathlib import Path

import pytest

from amlflows.stack import Stack
from tests.conftest import REPO


def test_the_server_keeps_its_sqlite_database_in_the_user_s_prefect_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    stack = Stack(state=tmp_path / "state")
    assert stack.database_shown == str(tmp_path / "home" / "prefect.db")
    assert stack.env()["PREFECT_HOME"] == str((tmp_path / "home").resolve())


def test_without_a_prefect_home_the_stack_keeps_one_of_its_own(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_HOME")
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    assert Stack(state=tmp_path / "state").prefect_home == tmp_path / "state" / "prefect"


def test_a_database_the_user_names_is_shown_without_its_password(monkeypatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://team:s3cret@db.internal:5432/prefect")
    stack = Stack()
    assert stack.database_shown == "postgresql+asyncpg://team:***@db.internal:5432/prefect"
    assert "s3cret" not in stack.database_shown and stack.server_env()["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("/prefect")
    assert "s3cret" not in "".join(stack.env().values()), "the workers, and the flows they run, are not given it"


def test_the_stack_serves_the_workspace_localml_root_names(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALML_ROOT", str(tmp_path / "team-workspace"))
    stack = Stack(state=tmp_path / "state")
    assert stack.env()["LOCALML_ROOT"] == str((tmp_path / "team-workspace").resolve())
    assert f"sqlite:///{(tmp_path / 'team-workspace' / 'mlflow.db').resolve()}" in stack.services()["mlflow-ui"]
    monkeypatch.delenv("LOCALML_ROOT")
    assert Stack().localml_root == Path(".localml")


def test_the_database_and_the_workers_an_up_chose_are_kept_for_the_next_up(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "stack.json").write_text('{"database": "postgresql", "workers": 3}')
    stack = Stack(state=tmp_path / "state")
    assert (stack.remembered().database, stack.remembered().workers) == ("postgresql", 3)
    assert (stack.remembered(workers=1).database, stack.remembered(workers=1).workers) == ("postgresql", 1)
    assert Stack(state=tmp_path / "new").remembered() == Stack(state=tmp_path / "new")
    assert list(Stack(state=tmp_path / "state", workers=3).services()) == [
        "prefect-server", "worker", "worker-2", "worker-3", "mlflow-ui"]


def test_only_the_server_is_given_the_stack_s_postgresql_password(tmp_path):
    stack = Stack(state=tmp_path / "state", database="postgresql")
    stack.postgres.root.mkdir(parents=True)
    stack.postgres.connection_file.write_text('{"user": "amlflows", "password": "pw-123", "database": "prefect"}')
    assert stack.server_env()["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith(":pw-123@127.0.0.1:5433/prefect")
    assert "pw-123" not in "".join(stack.env().values()) and "pw-123" not in stack.database_shown


@pytest.mark.parametrize(("stack", "environment", "says"), [
    (Stack(workers=0), {}, "--workers must be a whole number from 1 to 16, not 0"),
    (Stack(database="mysql"), {}, "--database must be one of sqlite, postgresql, not 'mysql'"),
    (Stack(database="postgresql"), {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@h/db"},
     "unset PREFECT_API_DATABASE_CONNECTION_URL to use the stack's PostgreSQL"),
])
def test_up_refuses_a_bad_choice_before_it_starts_anything(stack, environment, says, monkeypatch, tmp_path, capsys):
    from amlflows.stack import up

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)
    state = tmp_path / "state"
    assert up(dataclasses.replace(stack, state=state)) == 2
    assert says in capsys.readouterr().err
    assert not state.exists()


def test_up_will_not_switch_the_database_under_a_running_server(monkeypatch, tmp_path, capsys):
    from amlflows.stack import up

    state = tmp_path / "state"
    state.mkdir()
    (state / "stack.json").write_text('{"database": "sqlite", "workers": 1}')
    (state / "prefect-server.pid").write_text(json.dumps({"pid": os.getpid()}))  # a live process stands in for the server
    monkeypatch.chdir(REPO)
    assert up(Stack(state=state).remembered(database="postgresql")) == 2
    assert "the Prefect server is running on sqlite; stop the stack first (amlflows down)" in capsys.readouterr().err
    assert json.loads((state / "stack.json").read_text())["database"] == "sqlite"


def test_status_lists_each_service_and_says_when_the_stack_is_not_all_running(monkeypatch, tmp_path, capsys):
    from amlflows.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".amlflows").mkdir()
    (tmp_path / ".amlflows" / "stack.json").write_text('{"database": "postgresql", "workers": 2}')
    assert main(["status"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["prefect-server", "worker", "worker-2", "mlflow-ui", "postgres"]
    assert all(line.endswith("not running") for line in lines)
