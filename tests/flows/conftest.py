"""Flows run against one real Prefect server for the whole session (Prefect's test harness),
each test with its own localml workspace and its own result storage."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def workspace_root(prefect_server, tmp_path, monkeypatch):
    """A fresh localml workspace (LOCALML_ROOT) and Prefect result storage for one test."""
    root = tmp_path / "localml"
    monkeypatch.setenv("LOCALML_ROOT", str(root))
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}):
        yield root


@pytest.fixture
def started():
    """When the test started (UTC): the events it looks for are those stored since."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


@pytest.fixture
def ml_client(workspace_root):
    from tasks.workspace import get_client

    return get_client("local")


@pytest.fixture(scope="session")
def baseline_run(prefect_server, tmp_path_factory):
    """One workspace with a finished baseline flow run (AutoML on the diabetes sample), shared by the
    baseline and refine tests: an AutoML search is the slow part, so it runs once per session."""
    from flows.baseline import baseline
    from tests.flows.test_baseline import quick_params

    base = tmp_path_factory.mktemp("baseline")
    run = SimpleNamespace(root=base / "localml", results=base / "prefect-results", generated=base / "generated_code")
    with _workspace(run):
        run.state = baseline(quick_params(), return_state=True)
        run.result = run.state.result()
    return run


@pytest.fixture
def baseline_workspace(baseline_run):
    """The shared baseline workspace and its Prefect result storage, for one test."""
    with _workspace(baseline_run):
        yield baseline_run


@contextmanager
def _workspace(run):
    with pytest.MonkeyPatch.context() as patch, temporary_settings({PREFECT_LOCAL_STORAGE_PATH: run.results}):
        patch.setenv("LOCALML_ROOT", str(run.root))
        yield
