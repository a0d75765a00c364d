"""The ``deploy`` flow: a model version served by an online endpoint, rolled out safely.

    no endpoint yet:   create it -> deploy as blue -> smoke test -> blue takes 100%
    an endpoint serves: deploy as the other colour at 0% -> smoke test (straight to it) -> mirror a share of live
                        traffic to it -> [approval] -> traffic steps (10 -> 50 -> 100), each held while the gate
                        compares it with the current deployment -> the old one removed or kept at 0
    a breach anywhere:  traffic and mirror back as they were, the new deployment removed (or kept at 0), the run
                        fails naming the step, the figures and the limit

A re-run with the model the endpoint already serves changes nothing. A run killed mid-rollout leaves the
endpoint's rollout record, and the next run rolls the endpoint back to it first. It starts by hand, or from the
``amlflows.model.promoted`` event ``retrain`` emits when it promotes a champion.
"""

from __future__ import annotations

import time
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field, model_validator

from flows.parameters import FlowParameters, reference_check
from tasks.approval import ask_approval
from tasks.endpoints import (
    DeploymentSpec,
    EndpointRef,
    EndpointSpec,
    create_deployment,
    delete_deployment,
    ensure_endpoint,
    get_endpoint,
    set_mirror_traffic,
    set_traffic,
    tag_endpoint,
)
from tasks.models import ModelRef, check_model_reference, resolve_model, tag_model_version
from tasks.reports import publish_rollout_report
from tasks.rollout import (
    ROLLOUT_TAG,
    DeployResult,
    RolloutBreached,
    RolloutGate,
    RolloutPlan,
    RolloutRecord,
    SmokeSample,
    StepResult,
    hold_step,
    live_deployment,
    model_tag,
    next_colour,
    prepare_smoke_sample,
    rollout_record,
    rollout_still_running,
    smoke_test,
)


class DeployParameters(FlowParameters):
    """Parameters of the ``deploy`` flow; the defaults roll the diabetes champion out to ``diabetes-ep``."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    model: str = Field("azureml:diabetes-baseline@champion", description="The model version to serve: azureml:NAME:VERSION, @champion or @latest")
    endpoint_name: str = Field("diabetes-ep", description="The online endpoint (created if missing)")
    reason: Literal["manual", "schedule", "event"] = Field("manual", description="Why this run started")
    instance_count: int = Field(1, ge=1, description="Serving instances of the new deployment (on localml, processes)")
    max_concurrent_requests_per_instance: int = Field(1, ge=1, description="Requests an instance works on at once (Azure's default: 1)")
    request_timeout_ms: int = Field(5000, ge=1, le=180000, description="A request's time limit")
    code_path: str | None = Field(None, description="Folder of a scoring script, for a model served by your own score.py")
    scoring_script: str | None = Field(None, description="score.py with init() and run(raw_data), in code_path")
    environment: str | None = Field(None, description="The scoring script's environment (a conda .yml or a name); none for MLflow models")
    sample_data: str = Field("examples/data/diabetes-rai/test", description="Rows for the smoke test: a CSV or parquet file, an MLTable folder, or (on localml) azureml:NAME:VERSION")
    plan: RolloutPlan = Field(RolloutPlan(), description="The smoke test, the mirror step and the traffic steps")
    gate: RolloutGate = Field(RolloutGate(), description="When a step fails: the new deployment's figures against the current one's")
    old_deployment: Literal["delete", "keep"] = Field("delete", description="What happens to the old deployment once the new one takes 100%: deleted, or kept at 0%")
    failed_deployment: Literal["delete", "keep"] = Field("delete", description="What happens to a new deployment that was rolled back: deleted, or kept at 0% for inspection")
    require_approval: bool = Field(False, description="Pause before live traffic moves, until a person approves in the Prefect UI")
    approval_timeout_seconds: float = Field(3600, gt=0, description="How long to wait for approval before rolling back")

    _model_is_a_reference = reference_check(check_model_reference, "model")

    @model_validator(mode="after")
    def _scoring_script_has_its_parts(self) -> "DeployParameters":
        if (self.scoring_script or self.code_path) and not (self.scoring_script and self.code_path and self.environment):
            raise ValueError("A scoring script needs code_path and an environment too (a conda .yml, or a curated one such "
                             "as AzureML-sklearn-1.5@latest); leave all three empty for an MLflow model.")
        return self

    def deployment(self, name: str, model: str) -> DeploymentSpec:
        return DeploymentSpec(
            name=name, endpoint_name=self.endpoint_name, model=model, code_path=self.code_path,
            scoring_script=self.scoring_script, environment=self.environment, instance_count=self.instance_count,
            max_concurrent_requests_per_instance=self.max_concurrent_requests_per_instance,
            request_timeout_ms=self.request_timeout_ms,
        )


@flow(name="deploy")
def deploy(params: DeployParameters = DeployParameters.defaults()) -> DeployResult:
    """Serve a model version on an online endpoint: a first deployment, or a safe rollout gated on live figures."""
    params = params.validated()
    workspace = params.workspace
    model = resolve_model(workspace, params.model)  # an unknown model stops here: nothing deployed
    sample = prepare_smoke_sample(workspace, model.reference, params.sample_data, params.plan.smoke_rows)
    endpoint = get_endpoint(workspace, params.endpoint_name)
    interrupted = None
    if (record := rollout_record(endpoint)) is not None:
        if rollout_still_running(record):
            raise RuntimeError(
                f"Another deploy run (flow run {record.flow_run}, process {record.owner}) is rolling {record.model} out to "
                f"{params.endpoint_name} now; nothing was changed. Wait for it to end, or cancel it, and run again."
            )
        interrupted = _resolve_interrupted(params, record)
        endpoint = get_endpoint(workspace, params.endpoint_name)
    live = live_deployment(endpoint)
    if live is not None and endpoint.tags.get(model_tag(live)) == model.reference:
        get_run_logger().info("Endpoint %s already serves %s on %s: nothing to do", endpoint.name, model.reference, live)
        result = DeployResult(endpoint=endpoint.name, model=model.reference, deployment=live, outcome="unchanged",
                              interrupted_rollout=interrupted, scoring_uri=endpoint.scoring_uri)
    elif live is None:
        result = _first_deployment(params, model, sample).model_copy(update={"interrupted_rollout": interrupted})
    else:
        result = _roll_out(params, model, sample, endpoint, live).model_copy(update={"interrupted_rollout": interrupted})
    publish_rollout_report(result)
    return result


def _first_deployment(params: DeployParameters, model: ModelRef, sample: SmokeSample) -> DeployResult:
    """Create the endpoint, deploy as blue, smoke-test it, send it all traffic."""
    workspace, name = params.workspace, next_colour(None)
    endpoint = ensure_endpoint(workspace, EndpointSpec(name=params.endpoint_name))
    create_deployment(workspace, params.deployment(name, model.reference))
    smoke = smoke_test(workspace, params.endpoint_name, name, sample)
    if not smoke.passed:
        if params.failed_deployment == "delete":
            delete_deployment(workspace, params.endpoint_name, name)
        _fail(params, model, name, [smoke], None)
    endpoint = set_traffic(workspace, params.endpoint_name, {name: 100})
    _mark_serving(params, model, name, None)
    return DeployResult(endpoint=endpoint.name, model=model.reference, deployment=name, outcome="deployed",
                        scoring_uri=endpoint.scoring_uri, steps=[smoke.model_copy(update={"traffic": {name: 100}})])


def _roll_out(params: DeployParameters, model: ModelRef, sample: SmokeSample, endpoint: EndpointRef, live: str) -> DeployResult:
    """The new deployment beside the live one, taking over step by step; rolled back at the first breach."""
    workspace, new = params.workspace, next_colour(live)
    record = RolloutRecord(new=new, model=model.reference, traffic=endpoint.traffic, mirror=endpoint.mirror_traffic,
                           started=time.time(), flow_run=flow_run.id)
    tag_endpoint(workspace, endpoint.name, {ROLLOUT_TAG: record.model_dump_json()})  # before anything changes
    steps: list[StepResult] = []
    try:
        create_deployment(workspace, params.deployment(new, model.reference))
        _take_over(params, sample, live, new, steps)
    except BaseException as error:  # a breach, an error, a cancellation: never leave traffic split unwatched
        _roll_back(params, record)
        if isinstance(error, RolloutBreached):
            _fail(params, model, new, steps, live)
        raise
    if params.old_deployment == "delete":
        delete_deployment(workspace, endpoint.name, live)
    _mark_serving(params, model, new, live)
    tag_endpoint(workspace, endpoint.name, {ROLLOUT_TAG: None})
    return DeployResult(endpoint=endpoint.name, model=model.reference, deployment=new, outcome="rolled out", previous=live,
                        previous_kept=params.old_deployment == "keep", scoring_uri=endpoint.scoring_uri, steps=steps)


def _take_over(params: DeployParameters, sample: SmokeSample, live: str, new: str, steps: list[StepResult]) -> None:
    """Smoke test, mirror, approval and traffic steps, each appended to ``steps``; RolloutBreached at the first breach."""
    workspace, endpoint, plan = params.workspace, params.endpoint_name, params.plan
    _passed(steps, smoke_test(workspace, endpoint, new, sample))
    if plan.mirror_percent:
        mirror = {new: plan.mirror_percent}
        set_mirror_traffic(workspace, endpoint, mirror)
        step = hold_step(workspace, endpoint, f"mirror {plan.mirror_percent}%", new, live, plan.mirror_seconds, params.gate, plan)
        set_mirror_traffic(workspace, endpoint, {})
        _passed(steps, step.model_copy(update={"mirror": mirror}))
    if params.require_approval:
        _passed(steps, ask_approval(params.endpoint_name, new, steps, params.gate, params.plan, params.approval_timeout_seconds))
    baseline = None
    for share in plan.steps:
        traffic = {live: 100 - share, new: share}
        set_traffic(workspace, endpoint, traffic)
        step = hold_step(workspace, endpoint, f"traffic {share}%", new, live, plan.hold_seconds, params.gate, plan, baseline)
        _passed(steps, step.model_copy(update={"traffic": traffic}))
        if step.current is not None and step.current.requests >= params.gate.min_requests:
            baseline = step.current  # the last step's current deployment takes no traffic: compare with this


def _passed(steps: list[StepResult], step: StepResult) -> None:
    steps.append(step)
    if not step.passed:
        raise RolloutBreached(f"{step.step}: {step.reason}")


def _roll_back(params: DeployParameters, record: RolloutRecord) -> None:
    """Traffic and mirror as the record has them, the new deployment removed (or kept at 0), the record cleared."""
    workspace, endpoint = params.workspace, params.endpoint_name
    set_mirror_traffic(workspace, endpoint, {})  # first: a mirror may not point at a deployment given live traffic
    set_traffic(workspace, endpoint, record.traffic)
    if record.mirror and record.new not in record.mirror:
        set_mirror_traffic(workspace, endpoint, record.mirror)
    if params.failed_deployment == "delete":
        delete_deployment(workspace, endpoint, record.new)
    tag_endpoint(workspace, endpoint, {ROLLOUT_TAG: None})
    get_run_logger().warning("Rolled %s back: traffic %s, %s %s", endpoint, record.traffic, record.new,
                             "deleted" if params.failed_deployment == "delete" else "kept at 0%")


def _resolve_interrupted(params: DeployParameters, record: RolloutRecord) -> str:
    """A rollout a killed run left: rolled back to where it started, so this run starts from a settled endpoint."""
    _roll_back(params, record)
    found = (f"a rollout of {record.model} to {record.new}, started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(record.started))}, "
             f"was left unfinished; rolled back to traffic {record.traffic}")
    get_run_logger().warning("Endpoint %s: %s", params.endpoint_name, found)
    return found


def _mark_serving(params: DeployParameters, model: ModelRef, new: str, old: str | None) -> None:
    """The endpoint's tags name each deployment's model version; the model version names where it serves."""
    workspace, endpoint = params.workspace, params.endpoint_name
    removed = old is not None and params.old_deployment == "delete"
    tag_endpoint(workspace, endpoint, {model_tag(new): model.reference, **({model_tag(old): None} if removed else {})})
    tag_model_version(workspace, model, {"serving.endpoint": endpoint, "serving.deployment": new,
                                         "serving.since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _fail(params: DeployParameters, model: ModelRef, new: str, steps: list[StepResult], live: str | None) -> None:
    """Publish the timeline of a rollout that was rolled back, and fail the run with its reason."""
    publish_rollout_report(DeployResult(endpoint=params.endpoint_name, model=model.reference, deployment=live or new,
                                        outcome="rolled back", previous=live, steps=steps))
    step = steps[-1]
    raise RolloutBreached(f"Rolled back at '{step.step}': {new} {step.reason}. The endpoint serves as before"
                          f"{f' ({live})' if live else ''}; {new} was {'deleted' if params.failed_deployment == 'delete' else 'kept at 0%'}.")
