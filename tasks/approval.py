"""A person's approval before a rollout moves live traffic: the flow run pauses with a form in the Prefect UI.

The form (``RolloutApproval``) shows the smoke test's and the mirror's figures for both deployments, the gate and
what each answer does; Resume as it opens approves. A rejection, or no answer in time, is a breach the flow rolls
back on.
"""

from __future__ import annotations

import math
import time

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from tasks.rollout import RolloutGate, RolloutPlan, StepResult


class RolloutApproval(RunInput):
    # the pause's form; approve is on as it opens (the UI shows the default), so Resume as it stands approves
    approve: bool = Field(True, description="Shift live traffic to the new deployment (off: roll back)")
    note: str = Field("", description="Why, for the run's log")



def ask_approval(endpoint_name: str, new: str, steps: list[StepResult], gate: RolloutGate, plan: RolloutPlan,
                 timeout_seconds: float) -> StepResult:
    """Pause until a person approves shifting live traffic (the form shows the figures so far), or the timeout.

    The pause blocks this process, in a worker's run too (suspend_flow_run would end the process and run the flow
    again from the start once resumed): the rollout record's owner stays alive, so another deploy run is refused.
    Called by a flow, not a task: only a flow run pauses.

    Example:
        ```python
        step = ask_approval("diabetes-ep", "green", steps, RolloutGate(), RolloutPlan(), timeout_seconds=3600)
        ```
    """
    started = time.monotonic()
    try:
        form = RolloutApproval.with_initial_data(description=_approval_form(endpoint_name, new, steps, gate, plan, timeout_seconds))
        answer = pause_flow_run(wait_for_input=form, timeout=math.ceil(timeout_seconds), poll_interval=2)
    except FlowPauseTimeout:
        reason = f"no approval within {timeout_seconds:g} s"
        _running_again(f"{reason}: rolling back")
        return StepResult(step="approval", verdict="breached", seconds=round(time.monotonic() - started, 1), reason=reason)
    seconds = round(time.monotonic() - started, 1)
    if not answer.approve:
        return StepResult(step="approval", verdict="breached", seconds=seconds, reason=f"rejected: {answer.note or 'no reason given'}")
    return StepResult(step="approval", seconds=seconds, reason=f"approved{': ' + answer.note if answer.note else ''}")


def _running_again(message: str) -> None:
    """The run back in Running after its pause timed out, so that it rolls back visibly and fails with its own reason.

    Prefect's server ends an expired pause on its own terms: it rejects any state the run proposes after the expiry
    and fails the run with "The flow was failed and never resumed." (its pause_expirations service fails it within
    seconds too). Without this the run would show Paused, with a Resume button that no longer works, while the
    rollback runs, and end with that message instead of the rollback's. Forced: the expiry rule refuses it otherwise.
    """
    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
        if state is not None and (state.is_paused() or state.is_failed()):  # not a run someone cancelled meanwhile
            client.set_flow_run_state(flow_run.id, Running(message=message), force=True)


def _approval_form(endpoint_name: str, new: str, steps: list[StepResult], gate: RolloutGate, plan: RolloutPlan,
                   timeout_seconds: float) -> str:
    """The pause form's description (markdown): the steps so far with both deployments' figures, the gate, the choice."""

    def row(step: str, deployment: str, figures, verdict: str) -> str:
        if figures is None:
            return f"| {step} | {deployment} | | | | {verdict} |"
        p95 = figures.latency_ms.get("p95")
        return (f"| {step} | {deployment} | {figures.requests} | {figures.failure_rate:.2%} | "
                f"{'' if p95 is None else f'{p95:.1f} ms'} | {verdict} |")

    rows = []
    for step in steps:
        rows.append(row(step.step, f"{new} (new)", step.new, f"{step.verdict}: {step.reason}"))
        if step.current is not None:
            rows.append(row(step.step, f"{step.current.deployment} (live)", step.current, ""))
    return (
        f"**Shift live traffic on {endpoint_name} to the new deployment?**\n\n"
        "| step | deployment | requests | failure rate | p95 | verdict |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"The gate: the new deployment fails a step over {gate.max_failure_rate:.2%} failures and {gate.max_failure_ratio:g}x the "
        f"live one's rate, or over {gate.max_p95_ms:g} ms p95 and {gate.max_p95_ratio:g}x the live one's; judged from "
        f"{gate.min_requests} requests on.\n\n"
        f"Approve: live traffic moves in steps of {' -> '.join(f'{share}%' for share in plan.steps)}, each held "
        f"{plan.hold_seconds:g} s. Reject (approve off), or no answer within {timeout_seconds:g} s: "
        "rolled back, the endpoint serves as before."
    )
