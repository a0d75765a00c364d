"""Schedules fire: under `amlflows up` the scheduler creates the runs a deployment's schedule asks for, and the
worker runs them. (With SQLAlchemy 2.1 and Prefect 3.8.8 the scheduler failed every minute and nothing ran.)"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import prefect_client, wait_for_final_state

pytestmark = pytest.mark.e2e


def prefect(stack, *args: str) -> str:
    env = {**os.environ, "PREFECT_API_URL": stack.api_url, "PREFECT_CLI_PROMPT": "false"}
    result = subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def scheduled_runs(client, name: str):
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["auto-scheduled"])),
    )


def test_the_hourly_monitor_has_its_next_runs_scheduled(stack):
    deadline = time.monotonic() + 60
    with prefect_client(stack) as client:
        while not (runs := scheduled_runs(client, "monitor")):
            assert time.monotonic() < deadline, "the scheduler created no run for the monitor's hourly schedule"
            time.sleep(1)
    next_run = min(run.expected_start_time for run in runs)
    assert next_run.minute == 0 and next_run.second == 0 and next_run > datetime.datetime.now(datetime.timezone.utc)


def test_a_short_interval_schedule_gets_a_run_that_the_worker_completes(stack):
    """An interval schedule whose first run is due 20 s from now, added with the prefect CLI as a user would."""
    anchor = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=20)
    prefect(stack, "deployment", "schedule", "create", "train/train", "--interval", "3600", "--anchor-date", anchor.isoformat())
    try:
        deadline = time.monotonic() + 90
        with prefect_client(stack) as client:
            while not (due := [r for r in scheduled_runs(client, "train") if r.expected_start_time <= anchor]):
                assert time.monotonic() < deadline, "the scheduler created no run for the interval schedule"
                time.sleep(1)
            (run,) = due
            run = wait_for_final_state(client, run.id, 300, stack)
        assert run.state.is_completed(), f"{run.state.name}: {run.state.message}"
        assert run.start_time >= anchor - datetime.timedelta(seconds=1), "it ran when the schedule said, not before"
    finally:
        prefect(stack, "deployment", "schedule", "clear", "train/train", "--accept-yes")
