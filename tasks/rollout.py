"""Safe rollout: the plan, the gate, the smoke test and the watched steps of a deployment taking over an endpoint.

A rollout is the azureml-examples safe-rollout notebook's steps (new deployment at 0%, tested directly, mirrored,
traffic shifted step by step), each one held for a window while the gate compares the new deployment's live
figures with the current one's. A step *breaches* when the new deployment is over an absolute limit **and** over
the ratio times the current deployment's figure: neither a shared slowdown of the machine nor noise on a fast
model trips it, a deployment that fails or slows down where the current one does not does.

The rollout in progress is recorded on the endpoint itself (its ``amlflows.rollout`` tag), written before the new
deployment is created and removed when the rollout ends either way: a flow killed mid-rollout leaves the record,
and the next run of the flow rolls the endpoint back to it before anything else (``tasks.endpoints`` reads it).
Prefect's transaction rollback hooks would not do: they run in the process that was killed.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from amlkit.processes import is_alive, start_time
from tasks.endpoints import DeploymentFigures, EndpointRef, deployment_figures, score_on_deployment
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client

#: Longest window the figures can be read over (localml's router keeps 15 minutes).
MAX_WINDOW_SECONDS = 900
#: The endpoint tag holding the rollout in progress (a ``RolloutRecord``).
ROLLOUT_TAG = "amlflows.rollout"
#: The endpoint tag naming the model version a deployment serves: ``model.<deployment>``.
MODEL_TAG_PREFIX = "model."
COLOURS = ("blue", "green")


class RolloutBreached(RuntimeError):
    """A rollout step breached the gate; the endpoint was rolled back before this was raised."""


class RolloutPlan(BaseModel):
    smoke_rows: int = Field(20, ge=1, le=1000, description="Sample rows sent straight to the new deployment; its answers must equal the model's own predict")
    mirror_percent: int = Field(10, ge=0, le=50, description="Share of live requests copied to the new deployment before it takes any (0: no mirror step; Azure allows at most 50)")
    mirror_seconds: float = Field(60, gt=0, le=MAX_WINDOW_SECONDS, description="How long the mirror step is held")
    steps: list[int] = Field([10, 50, 100], min_length=1, description="The new deployment's live traffic share at each step, increasing, ending at 100")
    hold_seconds: float = Field(60, gt=0, le=MAX_WINDOW_SECONDS, description="How long each traffic step is held while the gate watches it")
    check_seconds: float = Field(5, gt=0, description="How often the gate looks at the figures during a step")
    no_traffic: Literal["wait", "proceed"] = Field(
        "proceed", description="When a step sees fewer than min_requests: go on with the smoke test alone (no caller is at risk), "
                               "or wait for them (up to no_traffic_timeout_seconds, then roll back)"
    )
    no_traffic_timeout_seconds: float = Field(600, gt=0, description="How long a step waits for live traffic before rolling back")

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= step <= 100 for step in steps):
            raise ValueError(f"steps {steps}: each is the new deployment's share of live traffic, 1 to 100")
        if any(later <= earlier for earlier, later in zip(steps, steps[1:])):
            raise ValueError(f"steps {steps} must increase, for example [10, 50, 100]")
        if steps[-1] != 100:
            raise ValueError(f"steps {steps} must end at 100: the rollout ends with the new deployment taking all traffic")
        return steps


class RolloutGate(BaseModel):
    min_requests: int = Field(20, ge=1, description="Requests the new deployment must have answered in a step before it is judged")
    max_failure_rate: float = Field(0.01, ge=0, le=1, description="Failure rate (5xx, timeouts, 429) the new deployment may not exceed...")
    max_failure_ratio: float = Field(2.0, ge=1, description="...while also over this many times the current deployment's")
    max_p95_ms: float = Field(200, gt=0, description="p95 latency (ms) the new deployment may not exceed...")
    max_p95_ratio: float = Field(3.0, ge=1, description="...while also over this many times the current deployment's")

    def breach(self, new: DeploymentFigures, current: DeploymentFigures | None) -> str | None:
        """Why the new deployment's figures breach the gate, or None when they pass (or are too few to judge)."""
        if new.requests < self.min_requests:
            return None
        current_rate = current.failure_rate if current and current.requests else 0.0
        if new.failure_rate > self.max_failure_rate and new.failure_rate > self.max_failure_ratio * current_rate:
            return (f"failure rate {new.failure_rate:.2%} of {new.requests} requests > limit {self.max_failure_rate:.2%} "
                    f"and > {self.max_failure_ratio:g}x the current deployment's {current_rate:.2%}")
        new_p95 = new.latency_ms.get("p95")
        current_p95 = current.latency_ms.get("p95") if current and current.requests else None
        if new_p95 is not None and new_p95 > self.max_p95_ms and (current_p95 is None or new_p95 > self.max_p95_ratio * current_p95):
            compared = f" and > {self.max_p95_ratio:g}x the current deployment's {current_p95:.1f} ms" if current_p95 is not None else ""
            return f"p95 latency {new_p95:.1f} ms > limit {self.max_p95_ms:g} ms{compared}"
        return None


class SmokeSample(BaseModel):
    """Rows for the smoke test, in the model's input columns, and what the model itself predicts for them."""

    columns: list[str]
    rows: list[list[Any]]
    expected: list[Any]

    def request(self) -> dict:
        return {"input_data": {"columns": self.columns, "index": list(range(len(self.rows))), "data": self.rows}}


class StepResult(BaseModel):
    """One step of the rollout as the timeline shows it."""

    step: str
    traffic: dict[str, int] = Field(default_factory=dict)
    mirror: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    new: DeploymentFigures | None = None
    current: DeploymentFigures | None = None
    verdict: Literal["passed", "breached", "no traffic: went on", "no traffic: timed out"] = "passed"
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict in ("passed", "no traffic: went on")


class DeployResult(BaseModel):
    endpoint: str
    model: str
    deployment: str = Field(description="The deployment serving the model now")
    outcome: Literal["deployed", "rolled out", "unchanged", "rolled back"]
    previous: str | None = Field(None, description="The deployment that served before, if any")
    previous_kept: bool = False
    interrupted_rollout: str | None = Field(None, description="What this run found left by a killed run, and did about it")
    scoring_uri: str | None = None
    steps: list[StepResult] = Field(default_factory=list)


class RolloutRecord(BaseModel):
    """What the endpoint looked like before a rollout, kept on it while the rollout runs, and who runs it."""

    new: str
    model: str
    traffic: dict[str, int]
    mirror: dict[str, int]
    started: float
    owner: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}", description="host:pid of the flow")
    owner_started: float | None = Field(default_factory=lambda: start_time(os.getpid()), description="its start (a pid is reused)")
    flow_run: str | None = None


def rollout_record(endpoint: EndpointRef | None) -> RolloutRecord | None:
    """The rollout the endpoint's tag says is in progress (a flow that ran it was killed), or None."""
    recorded = (endpoint.tags if endpoint else {}).get(ROLLOUT_TAG)
    return RolloutRecord.model_validate_json(recorded) if recorded else None


def live_deployment(endpoint: EndpointRef | None) -> str | None:
    """The deployment taking the most live traffic, or None when none takes any."""
    serving = {name: share for name, share in (endpoint.traffic if endpoint else {}).items() if share > 0}
    return max(serving, key=serving.get) if serving else None


def model_tag(deployment: str) -> str:
    return f"{MODEL_TAG_PREFIX}{deployment}"


def next_colour(live: str | None) -> str:
    """blue first, then the colour the live deployment is not."""
    return COLOURS[1] if live == COLOURS[0] else COLOURS[0]


@task(name="rollout_still_running", cache_policy=NO_CACHE)
def rollout_still_running(record: RolloutRecord) -> bool:
    """Whether the run that wrote ``record`` is still at work: its process, on this machine; else its Prefect flow
    run's state. False means it was killed (or the machine went down) mid-rollout.

    Example:
        ```python
        if rollout_still_running(record):
            raise RuntimeError("another deploy run is rolling out to this endpoint")
        ```
    """
    host, _, pid = record.owner.rpartition(":")
    if host == socket.gethostname():
        return pid.isdigit() and is_alive(int(pid), record.owner_started)
    if record.flow_run is None:
        return False
    from prefect import get_client as prefect_client

    with prefect_client(sync_client=True) as client:
        state = client.read_flow_run(record.flow_run).state
    return state is not None and (state.is_running() or state.is_paused())


@task(name="prepare_smoke_sample", **TRANSIENT_RETRIES)
def prepare_smoke_sample(workspace: str, model: str, sample_data: str, rows: int) -> SmokeSample:
    """The first ``rows`` of ``sample_data`` in the model's signature columns, with the model's own predictions.

    Refuses a model without an input signature (nothing says which columns to send) before anything is deployed.

    Example:
        ```python
        sample = prepare_smoke_sample("local", "azureml:diabetes-baseline:3", "examples/data/diabetes-rai/test", 20)
        ```
    """
    import mlflow.pyfunc

    client = get_client(workspace)
    name, version = model.removeprefix("azureml:").rsplit(":", 1)
    with tempfile.TemporaryDirectory(prefix="amlflows-smoke-") as folder:
        client.models.download(name=name, version=version, download_path=folder)
        loaded = mlflow.pyfunc.load_model(str(_mlflow_folder(Path(folder), model)))
        schema = loaded.metadata.get_input_schema()
        if schema is None or not schema.has_input_names():
            raise ValueError(f"Model {model} has no input signature, so the smoke test cannot know which columns to send: "
                             "log it with a signature (mlflow's infer_signature) or set plan.smoke_rows after adding one.")
        columns = schema.input_names()
        frame = _as_signature_types(_sample_rows(client, sample_data, columns, rows), schema)
        expected = loaded.predict(frame)
    return SmokeSample(columns=columns, rows=json.loads(frame.to_json(orient="values")), expected=_plain_list(expected))


@task(name="smoke_test", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def smoke_test(workspace: str, endpoint_name: str, deployment_name: str, sample: SmokeSample) -> StepResult:
    """Send the sample straight to the deployment (Azure's ``azureml-model-deployment`` header) and compare its
    answers with the model's own predictions: a StepResult that passed or breached, with the first difference.

    Example:
        ```python
        result = smoke_test("local", "diabetes-ep", "green", sample)
        ```
    """
    started = time.monotonic()
    try:
        answers = score_on_deployment(workspace, endpoint_name, deployment_name, sample.request())
    except Exception as error:  # the deployment's error is the smoke test's finding, not the task's failure
        return StepResult(step="smoke test", verdict="breached", seconds=time.monotonic() - started,
                          reason=f"{deployment_name} did not answer the sample: {error}")
    answers = answers.get("predictions", answers) if isinstance(answers, dict) else answers
    difference = _first_difference(_plain_list(answers), sample.expected)
    verdict = "breached" if difference else "passed"
    reason = difference or f"{len(sample.rows)} rows answered as the model predicts them"
    get_run_logger().info("Smoke test of %s: %s", deployment_name, reason)
    return StepResult(step="smoke test", verdict=verdict, reason=reason, seconds=round(time.monotonic() - started, 2))


@task(name="hold_step", cache_policy=NO_CACHE)
def hold_step(workspace: str, endpoint_name: str, step: str, new: str, current: str | None, seconds: float,
              gate: RolloutGate, plan: RolloutPlan, baseline: DeploymentFigures | None = None) -> StepResult:
    """Hold a step for ``seconds``, judging the new deployment against the current one every ``plan.check_seconds``;
    a breach ends the step at once. With too few requests at the end, ``plan.no_traffic`` decides.

    ``baseline`` stands in for the current deployment's figures when it takes no live traffic (the last step).

    Example:
        ```python
        result = hold_step("local", "diabetes-ep", "traffic 10%", "green", "blue", 60, RolloutGate(), RolloutPlan())
        ```
    """
    started = time.monotonic()
    deadline, give_up = started + seconds, started + max(seconds, plan.no_traffic_timeout_seconds)
    while True:
        remaining = deadline - time.monotonic()
        time.sleep(min(plan.check_seconds, remaining) if remaining > 0 else plan.check_seconds)
        elapsed = time.monotonic() - started
        window = min(MAX_WINDOW_SECONDS, math.ceil(elapsed))
        result = StepResult(step=step, seconds=round(elapsed, 1), new=deployment_figures(workspace, endpoint_name, new, window),
                            current=deployment_figures(workspace, endpoint_name, current, window) if current else None)
        compared = result.current if result.current and result.current.requests >= gate.min_requests else baseline or result.current
        if reason := gate.breach(result.new, compared):
            get_run_logger().warning("%s: %s breached the gate: %s", step, new, reason)
            return result.model_copy(update={"verdict": "breached", "reason": reason})
        if time.monotonic() >= deadline and (ended := _end_of_window(result, gate, plan, time.monotonic() >= give_up)):
            return ended


def _end_of_window(result: StepResult, gate: RolloutGate, plan: RolloutPlan, waited_enough: bool) -> StepResult | None:
    """The verdict of a step whose window has passed without a breach, or None to keep waiting for traffic."""
    logger, figures = get_run_logger(), result.new
    if figures.requests >= gate.min_requests:
        logger.info("%s: %s passed (%d requests, failure rate %.2f%%, p95 %s ms)", result.step, figures.deployment,
                    figures.requests, 100 * figures.failure_rate, figures.latency_ms.get("p95"))
        return result.model_copy(update={"reason": f"{figures.requests} requests within the gate"})
    too_few = f"{figures.requests} requests (< {gate.min_requests}) in {result.seconds:.0f} s"
    if plan.no_traffic == "proceed":
        logger.warning("%s: %s: went on with the smoke test alone", result.step, too_few)
        return result.model_copy(update={"verdict": "no traffic: went on", "reason": f"{too_few}: went on with the smoke test alone"})
    if waited_enough:
        return result.model_copy(update={"verdict": "no traffic: timed out", "reason": too_few})
    return None


def _mlflow_folder(folder: Path, model: str) -> Path:
    """The folder holding the downloaded model's MLmodel file."""
    found = sorted(path.parent for path in folder.rglob("MLmodel"))
    if not found:
        raise ValueError(f"Model {model} is not an MLflow model (no MLmodel file), so the smoke test cannot predict with it: "
                         "register it as mlflow_model with a signature.")
    return found[0]


def _sample_rows(client: Any, sample_data: str, columns: list[str], rows: int) -> Any:
    import pandas as pd

    from tasks.data import read_table

    source = Path(sample_data)
    if source.suffix in (".csv", ".parquet"):
        if not source.is_file():
            raise ValueError(f"Sample data '{sample_data}' not found (looked in {Path.cwd()}): give a CSV or parquet file "
                             "or an MLTable folder.")
        frame = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    else:  # an MLTable folder, or (on localml) a data asset
        frame = read_table(client, sample_data)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"Sample data '{sample_data}' lacks the model's input columns {missing}: give rows the model can score.")
    return frame[columns].head(rows)


def _as_signature_types(frame: Any, schema: Any) -> Any:
    """The rows in the signature's column types (a CSV's whole numbers for a ``double`` column), as a client sends them."""
    from mlflow.types import DataType

    types = {spec.name: spec.type.to_numpy() for spec in schema.inputs if isinstance(spec.type, DataType)}
    try:
        return frame.astype(types)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The sample rows do not fit the model's signature ({error}): give rows of its column types.") from None


def _plain_list(values: Any) -> list:
    """Predictions as JSON would carry them (numpy scalars and arrays as Python numbers and lists)."""
    return json.loads(json.dumps(values.tolist() if hasattr(values, "tolist") else list(values), default=str))


def _first_difference(answers: list, expected: list) -> str | None:
    if len(answers) != len(expected):
        return f"answered {len(answers)} predictions for {len(expected)} rows"
    for row, (got, want) in enumerate(zip(answers, expected)):
        if not _same(got, want):
            return f"row {row}: the deployment answered {got!r}, the model predicts {want!r}"
    return None


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want))
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return got == want
