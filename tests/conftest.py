"""Test settings that must be in place before Prefect or our tasks are imported."""

import os
import tempfile
from pathlib import Path

import pytest

# Prefect keeps its home (profiles, the harness database) out of the user's ~/.prefect
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="amlflows-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# retries wait fractions of a second in tests (read when tasks/ is imported)
os.environ["AMLFLOWS_RETRY_BASE_SECONDS"] = "0.05"
os.environ.pop("LOCALML_FAULTS", None)

REPO = Path(__file__).resolve().parents[1]

#: fixtures that run an AutoML search (a minute or more): every test that uses one is slow
AUTOML_FIXTURES = frozenset({"baseline_run", "automl_jobs"})


def pytest_collection_modifyitems(items):
    for item in items:
        if AUTOML_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
