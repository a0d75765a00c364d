"""End-to-end: the local stack `amlflows up` starts (its own Prefect server, worker and MLflow UI), used the way
a person uses it, through the Prefect UI in headless Chromium and the `prefect` command line.

These tests take minutes, so they carry the ``e2e`` marker: ``make e2e`` runs them, and CI runs them after
``make test``.
"""

from __future__ import annotations

import io
import shutil
import socket
import time
from contextlib import contextmanager, redirect_stdout
from types import SimpleNamespace

import psutil
import pytest

from tests.conftest import REPO

#: Chromium's background traffic to Google's hosts is refused on a closed network: keep the browser quiet.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_stack(base, **choices):
    """`amlflows up` from the repository root, in folders under ``base``; `amlflows down` afterwards, which must
    leave none of the stack's processes running. ``choices``: the stack's database and workers.

    The scheduler looks for due schedules every 2 s instead of every minute, and the worker polls every
    second, so a run starts in seconds rather than a minute; everything else is as a user gets it.
    Yields the stack, what `up` printed and the settings it ran with."""
    from amlflows.stack import Stack, down, status, up

    settings = {
        "PREFECT_HOME": base / "prefect-home",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": 2,
        "PREFECT_WORKER_QUERY_SECONDS": 1,
        "PREFECT_LOCAL_STORAGE_PATH": base / "prefect-results",
    }
    stack = Stack(prefect_port=free_port(), mlflow_port=free_port(), postgres_port=free_port(), localml_root=base / "localml",
                  state=base / "state", **choices)
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # what `up` starts inherits these; the tests' process keeps its own
        for name, value in settings.items():
            patch.setenv(name, str(value))
        patch.chdir(REPO)
        with redirect_stdout(output):
            started = up(stack)
    print(output.getvalue())
    running = status(stack)
    try:
        assert started == 0, output.getvalue()
        yield SimpleNamespace(stack=stack, output=output.getvalue(), settings=settings)
    finally:
        # `down` leaves endpoints serving, as a user wants; a test must not. Workers first: a deploy run a promotion
        # triggered may still be going, and would start serving processes after its endpoints were deleted (the
        # processes an endpoint starts are recorded in the workspace at once, so deleting afterwards stops them all)
        assert down(stack) == 0
        delete_endpoints(stack.localml_root)
        assert status(stack) == dict.fromkeys(running, None)
        for pid in running.values():  # gone, or ended and waiting to be reaped by this process
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"{pid} still runs"


def delete_endpoints(root, names: list[str] | None = None) -> None:
    """Stop the online endpoints of the localml workspace at ``root`` (its routers and serving processes): all of
    them, or those ``names``."""
    from localml import LocalMLClient

    client = LocalMLClient(root)
    for endpoint in client.online_endpoints.list():
        if names is None or endpoint.name in names:
            client.online_endpoints.begin_delete(endpoint.name).result()


@pytest.fixture(scope="session")
def started_stack(tmp_path_factory):
    """The stack every e2e test but the load test shares: SQLite, one worker, as a new user starts it."""
    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@pytest.fixture(scope="session")
def stack(started_stack):
    return started_stack.stack


@pytest.fixture
def stack_environment(started_stack, monkeypatch):
    """This process with the settings `up` ran with, in the repository root: for running `up` again."""
    for name, value in started_stack.settings.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.chdir(REPO)
    return started_stack.settings


@contextmanager
def prefect_client(stack):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        yield client


def wait_for_final_state(client, run_id, timeout: float, stack):
    """The flow run once it has ended; the worker's log tail in the message when it does not end in time."""
    deadline = time.monotonic() + timeout
    while (run := client.read_flow_run(run_id)).state is None or not run.state.is_final():
        if time.monotonic() > deadline:
            log = (stack.state / "worker.log").read_text()[-3000:]
            pytest.fail(f"flow run {run.name} is still {run.state.name if run.state else None}; worker log:\n{log}")
        time.sleep(1)
    return run


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("The UI tests need Chromium: apt-get install chromium (make test installs it).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab; ``page.api_problems`` lists the API calls that failed, for the failure messages."""
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.api_problems = []
    page.on("response", lambda r: "/api/" in r.url and r.status >= 400 and page.api_problems.append(f"{r.status} {r.request.method} {r.url}"))
    page.on("requestfailed", lambda r: "/api/" in r.url and page.api_problems.append(f"{r.failure} {r.method} {r.url}"))
    yield page
    context.close()
