"""Flows run against one real Prefect server for the whole session (Prefect's test harness),
each test with its own localml workspace and its own result storage."""

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
def ml_client(workspace_root):
    from tasks.workspace import get_client

    return get_client("local")
