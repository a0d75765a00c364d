"""The rollout's rules on their own: the gate's verdicts, the plan's checks, the rollout record, the timeline's chart."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.charts import rollout_chart
from tasks.endpoints import DeploymentFigures, EndpointRef
from tasks.rollout import ROLLOUT_TAG, RolloutGate, RolloutPlan, RolloutRecord, live_deployment, next_colour, rollout_record


def figures(name: str, requests: int, failures: int = 0, p95: float | None = 2.0) -> DeploymentFigures:
    return DeploymentFigures(deployment=name, window_seconds=60, requests=requests, failures=failures,
                             failure_rate=failures / requests if requests else 0.0, latency_ms={"p95": p95})


GATE = RolloutGate(min_requests=20, max_failure_rate=0.01, max_failure_ratio=2.0, max_p95_ms=200, max_p95_ratio=3.0)


@pytest.mark.parametrize("new, current, breach", [
    (figures("green", 100, failures=5), figures("blue", 100), "failure rate 5.00% of 100 requests > limit 1.00%"),
    (figures("green", 100, failures=5), figures("blue", 100, failures=4), None),  # over the limit, but no worse than blue
    (figures("green", 100, failures=1), figures("blue", 100), None),  # worse than blue, but within the limit
    (figures("green", 10, failures=10), figures("blue", 100), None),  # too few requests to judge yet
    (figures("green", 100, p95=450), figures("blue", 100, p95=3), "p95 latency 450.0 ms > limit 200 ms and > 3x"),
    (figures("green", 100, p95=450), figures("blue", 100, p95=300), None),  # the whole machine is slow
    (figures("green", 100, p95=150), figures("blue", 100, p95=3), None),  # 50x slower, still within the limit
    (figures("green", 100, p95=450), None, "p95 latency 450.0 ms > limit 200 ms"),  # nothing to compare with
    (figures("green", 100, failures=5), figures("blue", 0), "failure rate"),  # blue saw nothing: the limit alone
], ids=["fails where blue does not", "fails as blue does", "a little worse, within the limit", "too few requests",
        "slow where blue is fast", "slow as blue is", "slower, within the limit", "slow, no current figures",
        "fails, blue idle"])
def test_a_step_breaches_only_over_the_absolute_limit_and_the_ratio_to_the_current_deployment(new, current, breach):
    verdict = GATE.breach(new, current)
    assert verdict is None if breach is None else verdict.startswith(breach) or breach in verdict, verdict


@pytest.mark.parametrize("steps, message", [([10, 50], "must end at 100"), ([50, 50, 100], "must increase"),
                                            ([0, 100], "1 to 100"), ([], "at least 1 item")])
def test_a_plan_whose_steps_do_not_rise_to_100_is_refused(steps, message):
    with pytest.raises(ValidationError, match=message):
        RolloutPlan(steps=steps)


def test_the_record_of_a_rollout_is_read_back_from_the_endpoint_s_tag_within_azure_s_tag_length():
    record = RolloutRecord(new="green", model="azureml:diabetes-baseline:12", traffic={"blue": 100}, mirror={},
                           started=1.0, flow_run="0d7a0b8e-5f0e-4a5e-9c53-0c1a2b3c4d5e")
    assert len(record.model_dump_json()) <= 256  # Azure's limit on a tag's value
    endpoint = EndpointRef(name="diabetes-ep", traffic={"blue": 50, "green": 50}, tags={ROLLOUT_TAG: record.model_dump_json()})
    assert rollout_record(endpoint) == record
    assert rollout_record(EndpointRef(name="diabetes-ep")) is None


def test_the_live_deployment_is_the_one_taking_most_traffic_and_the_next_colour_is_the_other():
    assert live_deployment(EndpointRef(name="e", traffic={"blue": 90, "green": 10})) == "blue"
    assert live_deployment(EndpointRef(name="e", traffic={"blue": 0, "green": 0})) is None
    assert live_deployment(None) is None
    assert [next_colour(None), next_colour("blue"), next_colour("green")] == ["blue", "green", "blue"]


def test_the_rollout_chart_is_a_png_of_both_deployments_across_the_steps():
    steps = [("mirror 10%", {"green": (3.0, 0.0), "blue": (2.0, 0.0)}), ("traffic 10%", {"green": (None, 0.0), "blue": (2.1, 0.0)}),
             ("traffic 100%", {"green": (2.5, 0.02)})]
    assert rollout_chart(steps).startswith(b"\x89PNG")


def test_a_rollout_is_still_running_while_its_process_lives_and_not_once_its_pid_is_gone_or_reused():
    import subprocess
    import sys

    from tasks.rollout import rollout_still_running

    record = RolloutRecord(new="green", model="azureml:m:2", traffic={"blue": 100}, mirror={}, started=1.0)
    assert rollout_still_running.fn(record)  # this process wrote it
    assert not rollout_still_running.fn(record.model_copy(update={"owner_started": record.owner_started - 60}))  # reused pid
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert not rollout_still_running.fn(record.model_copy(update={"owner": f"{record.owner.rpartition(':')[0]}:{ended.pid}"}))
