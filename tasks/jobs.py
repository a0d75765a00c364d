"""Command jobs: submit once, wait with the job's log in the Prefect run log, read metrics.

A job's name derives from its cache key (the spec, the content of every local
input and of the code, and the workspace), so submitting the same job again
re-attaches to it instead of training twice: after a task retry, a restarted
flow or a plain re-run.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run, task_run
from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from amlkit.hashing import content_hash
from amlkit.placeholders import check_placeholders
from amlkit.references import is_local_path
from tasks._stdout import lines_printed_by_this_thread
from tasks.retries import RETRIES, RETRY_DELAYS_SECONDS, TRANSIENT_RETRIES, TransientFaultError, is_transient
from tasks.workspace import get_client, tracking_client, workspace_identity

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})
STATUS_PROGRESS = {"NotStarted": 0.0, "Starting": 5.0, "Queued": 10.0, "Preparing": 20.0, "Running": 40.0, "Finalizing": 90.0}
LOG_TAIL_LINES = 30
MAX_POLL_SECONDS = 10.0
#: How long a timed-out wait waits for the job's cancel to take effect before it gives up and says so.
CANCEL_TIMEOUT_SECONDS = 60.0
#: The job tag naming the Prefect flow run that submitted the job: ``reused`` is True only for another run's job.
SUBMITTER_TAG = "amlflows.flow_run_id"


class InputSpec(BaseModel):
    """A data input: a local path, an ``azureml:name:version`` / ``azureml:name@latest`` asset, or an azureml:// URI."""

    type: Literal["uri_file", "uri_folder", "mltable"] = Field("uri_file", description="Azure's data type of the input")
    path: str = Field(description="A local file or folder, azureml:NAME:VERSION, or an azureml:// URI")


class OutputSpec(BaseModel):
    type: Literal["uri_folder", "uri_file", "mlflow_model", "custom_model"] = "uri_folder"


class JobSpec(BaseModel):
    """What every job spec offers ``submit_job``: its data inputs, its local paths, its entity."""

    experiment_name: str = "amlflows"

    def data_inputs(self) -> dict[str, InputSpec]:
        raise NotImplementedError

    def with_data_inputs(self, inputs: dict[str, InputSpec]) -> "JobSpec":
        raise NotImplementedError

    def with_paths_replaced(self, replacements: dict[str, str]) -> "JobSpec":
        """A copy whose local paths are replaced (by their content hashes, for a cache key)."""
        return self.with_data_inputs(
            {k: v.model_copy(update={"path": replacements.get(v.path, v.path)}) for k, v in self.data_inputs().items()}
        )

    def local_paths(self) -> list[str]:
        return [v.path for v in self.data_inputs().values() if is_local_path(v.path)]

    def to_job(self, name: str | None = None) -> Any:
        raise NotImplementedError

    def _check_local_paths(self) -> None:
        for path in self.local_paths():
            if not Path(path).expanduser().exists():
                raise ValueError(f"Local path '{path}' does not exist (looked in {Path.cwd()}). Fix the path.")


class CommandJobSpec(JobSpec):
    """A command job as plain data (so it can be a flow parameter and a cache key)."""

    command: str = Field(description="Shell command; ${{inputs.x}} and ${{outputs.y}} are filled in")
    code: str | None = Field(default=None, description="Local folder (or file) uploaded as the job's working directory")
    environment: str = Field(default="AzureML-sklearn-1.5@latest", description="Environment name (curated or registered)")
    inputs: dict[str, InputSpec | StrictBool | StrictInt | StrictFloat | str] = Field(default_factory=dict)
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    compute: str | None = Field(default=None, description="Compute target; None runs on the workspace's default")
    display_name: str | None = None
    environment_variables: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "CommandJobSpec":
        check_placeholders(self.command, self.inputs, self.outputs, self.display_name or self.experiment_name)
        self._check_local_paths()
        return self

    def data_inputs(self) -> dict[str, InputSpec]:
        return {k: v for k, v in self.inputs.items() if isinstance(v, InputSpec)}

    def with_data_inputs(self, inputs: dict[str, InputSpec]) -> "CommandJobSpec":
        return self.model_copy(update={"inputs": {**self.inputs, **inputs}})

    def with_paths_replaced(self, replacements: dict[str, str]) -> "CommandJobSpec":
        copy = super().with_paths_replaced(replacements)
        return copy.model_copy(update={"code": replacements.get(self.code, self.code)})

    def local_paths(self) -> list[str]:
        return ([self.code] if self.code and is_local_path(self.code) else []) + super().local_paths()

    def to_job(self, name: str | None = None) -> Any:
        """The ``azure.ai.ml`` command job entity this spec describes."""
        return self.to_command(name)._to_job()

    def to_command(self, name: str | None = None) -> Any:
        """The ``azure.ai.ml`` command (a node: call it with sweep expressions to make a sweep job)."""
        from azure.ai.ml import Input, Output, command

        return command(
            name=name,
            command=self.command,
            code=self.code,
            environment=self.environment,
            inputs={k: Input(type=v.type, path=v.path) if isinstance(v, InputSpec) else v for k, v in self.inputs.items()},
            outputs={k: Output(type=v.type) for k, v in self.outputs.items()},
            compute=self.compute,
            experiment_name=self.experiment_name,
            display_name=self.display_name,
            environment_variables=self.environment_variables or None,
            tags=self.tags,
        )


class SubmittedJob(BaseModel):
    name: str
    status: str
    studio_url: str | None = None
    reused: bool = Field(default=False, description="True when a job another flow run submitted was re-attached")


class JobResult(BaseModel):
    name: str
    status: str
    experiment_name: str | None = None
    studio_url: str | None = None
    duration_seconds: float | None = None


class JobFailedError(RuntimeError):
    """The job itself failed (a user error: never retried)."""


class JobTimeoutError(RuntimeError):
    """The job ran past the wait's timeout and was canceled."""


def job_cache_key(spec: JobSpec, workspace: str) -> str:
    """Task identity + canonical job spec + content of every local input + workspace identity."""
    hashes = {path: content_hash(path) for path in spec.local_paths()}
    canonical = spec.with_paths_replaced({path: f"sha256-{digest[:32]}" for path, digest in hashes.items()})
    payload = {
        "task": "submit_job/1",
        "spec": canonical.to_job()._to_dict(),
        "workspace": workspace_identity(workspace),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def job_name_for(spec: JobSpec, key: str) -> str:
    prefix = re.sub(r"[^a-z0-9]+", "-", spec.experiment_name.lower()).strip("-")[:40] or "job"
    return f"{prefix}-{key[:12]}"


@task(name="submit_job", **TRANSIENT_RETRIES)
def submit_job(workspace: str, spec: JobSpec, refresh: bool = False) -> SubmittedJob:
    """Submit a job (command or AutoML), or re-attach to the job this exact spec already started.

    The job's name derives from the spec's cache key. If a job of that name exists and has
    not failed, it is re-attached; a failed or canceled one is followed by a new attempt
    (``<name>-2``, ...). ``refresh=True`` always starts a new attempt. Runs submitting the same
    spec at once get one job: the others re-attach to it. The job is tagged with the submitting
    flow run (``amlflows.flow_run_id``), so a retry after a lost reply finds its own job
    (``reused=False``) and a refresh does not start a second one.

    Example:
        ```python
        from prefect import flow
        from tasks.jobs import CommandJobSpec, InputSpec, submit_job, wait_for_job

        @flow
        def train_once():
            spec = CommandJobSpec(
                code="examples/train_diabetes",
                command="python train.py --training_data ${{inputs.data}}",
                inputs={"data": InputSpec(type="uri_file", path="examples/data/diabetes/diabetes.csv")},
            )
            job = submit_job("local", spec)
            return wait_for_job("local", job.name)
        ```
    """
    client = get_client(workspace)
    spec = _pin_latest_versions(client, spec)
    base = job_name_for(spec, job_cache_key(spec, workspace))
    try:
        return _submit_or_reattach(client, spec, base, refresh)
    except Exception as error:
        if is_transient(error):
            raise TransientFaultError(
                f"Submitting job {base} met a transient fault: {str(error).rstrip('.')}. The submission may have taken effect, "
                f"and the job be queued or running: {_how_to_reach(base)}."
            ) from error
        raise


def _submit_or_reattach(client: Any, spec: JobSpec, base: str, refresh: bool) -> SubmittedJob:
    logger = get_run_logger()
    submitter = flow_run.id  # None when the task is called outside a flow
    attempt = 1
    while True:
        name = base if attempt == 1 else f"{base}-{attempt}"
        existing = _find_job(client, name)
        if existing is None:
            job, created = _create_or_find(client, _tagged(spec.to_job(name=name), submitter), name)
            if created:
                logger.info("Submitted job %s (%s): %s", name, job.status, job.studio_url)
                return SubmittedJob(name=name, status=job.status, studio_url=job.studio_url)
            existing = job
        ours = submitter is not None and (existing.tags or {}).get(SUBMITTER_TAG) == submitter
        # a job this flow run submitted is its own (a retry after a lost reply finds it), even with refresh
        if (ours or not refresh) and existing.status not in ("Failed", "Canceled"):
            if ours:
                logger.info("Found job %s (%s), submitted earlier by this flow run", name, existing.status)
            else:
                logger.info("Re-attached to job %s (%s): same spec and inputs, nothing resubmitted", name, existing.status)
            return SubmittedJob(name=name, status=existing.status, studio_url=existing.studio_url, reused=not ours)
        attempt += 1


def _tagged(job: Any, submitter: str | None) -> Any:
    """The job tagged with the flow run that submits it, so a later look can tell this run's job from another's."""
    if submitter is not None:
        job.tags = {**(job.tags or {}), SUBMITTER_TAG: submitter}
    return job


def _create_or_find(client: Any, job: Any, name: str) -> tuple[Any, bool]:
    """``(the new job, True)``; or ``(the job of that name, False)`` when creating failed but the job exists.

    Creating fails with the job in place when another run created it at the same moment (a conflict), or when our
    own request took effect and its reply was lost. Azure's and localml's errors differ, so the job itself is the
    evidence. A job found failed is not re-attached: the error that stopped it is the one to see.
    """
    try:
        return client.jobs.create_or_update(job), True
    except Exception:
        existing = _find_job(client, name)
        if existing is None or existing.status in ("Failed", "Canceled"):
            raise
        return existing, False


def _wait_cache_key(context: Any, parameters: dict) -> str:
    return f"wait_for_job/1/{workspace_identity(parameters['workspace'])}/{parameters['job_name']}"


@task(name="wait_for_job", cache_key_fn=_wait_cache_key, persist_result=True, **TRANSIENT_RETRIES)
def wait_for_job(
    workspace: str, job_name: str, timeout_seconds: float | None = None, cancel_timeout_seconds: float = CANCEL_TIMEOUT_SECONDS
) -> JobResult:
    """Follow a job to its end: its log lines go to the Prefect log, its status to a progress artifact.

    Polls with backoff. A job still running after ``timeout_seconds`` is canceled and the task
    fails; the cancel is awaited at most ``cancel_timeout_seconds``, and the error says whether
    the job ended or what it was left doing. A failed job fails the task at once (no retry) with
    the job's error and the tail of its log. A completed job's result is cached, so a re-run does
    not wait again. A retry after a transient fault goes on where the failed try stopped: it shows
    no log line or status twice and moves the same progress artifact; past the last retry the
    error names the job, which goes on running.

    Example:
        ```python
        result = wait_for_job("local", job.name, timeout_seconds=1800)
        print(result.status, result.studio_url)
        ```
    """
    key = (task_run.id, job_name)
    shown = _shown.setdefault(key, _Shown())
    try:
        job, job_log, seconds = _follow(workspace, job_name, timeout_seconds, cancel_timeout_seconds, shown)
    except Exception as error:
        if not is_transient(error):
            _shown.pop(key, None)
            raise
        if task_run.run_count > RETRIES:  # the last try: no retry will go on from here
            _shown.pop(key, None)
        raise TransientFaultError(
            f"Lost contact with the workspace while following job {job_name}, last seen {shown.status or 'in an unknown state'}: "
            f"{str(error).rstrip('.')}. The job goes on without this flow run and may still be running: {_how_to_reach(job_name)}."
        ) from error
    _shown.pop(key, None)
    if job.status != "Completed":
        raise _job_failed_error(job_name, job, job_log)
    return JobResult(
        name=job_name,
        status=job.status,
        experiment_name=job.experiment_name,
        studio_url=job.studio_url,
        duration_seconds=seconds,
    )


@dataclass
class _Shown:
    """What a wait has shown of its job so far, kept across the task's retries so that a retry repeats none of it:
    how many lines of the job's log went to the Prefect log, the last status logged, the progress artifact."""

    lines: int = 0
    status: str | None = None
    progress: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim_line(self, number: int) -> bool:
        """True if line ``number`` of the stream (from 1) is new; a retry's stream, or an earlier try's stream thread
        still running, may reach the same line."""
        with self.lock:
            if number <= self.lines:
                return False
            self.lines = number
            return True


#: Per (task run, job): a retry is the same task run.
_shown: dict[tuple[Any, str], _Shown] = {}


def _follow(workspace: str, job_name: str, timeout_seconds: float | None, cancel_timeout_seconds: float, shown: _Shown) -> tuple[Any, "_JobLog", float]:
    """The ended job, its log, and the seconds this try followed it."""
    logger = get_run_logger()
    client = get_client(workspace)
    job_log = _JobLog(client, job_name, logger, shown)
    job_log.start()
    started = time.monotonic()
    job = _poll_until_ended(client, job_name, timeout_seconds, cancel_timeout_seconds, job_log, logger)
    job_log.join(timeout=15)
    return job, job_log, round(time.monotonic() - started, 2)


class _JobLog:
    """A job's log streamed into the Prefect log on a thread of its own, keeping its last lines for a failure's report.

    A stream cut by a transient fault is started again; it prints the log from its start, so lines already shown
    (by this try or an earlier one) are skipped.
    """

    def __init__(self, client: Any, job_name: str, logger: Any, shown: _Shown):
        self.client, self.job_name, self.logger, self.shown = client, job_name, logger, shown
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.stream_errors: list[BaseException] = []
        self.lines_streamed = 0
        self.thread = threading.Thread(target=self._follow, name=f"stream-{job_name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout=timeout)

    def _on_line(self, line: str) -> None:
        self.lines_streamed += 1
        self.tail.append(line)
        if self.shown.claim_line(self.lines_streamed) and line.strip():
            self.logger.info("[%s] %s", self.job_name, line)

    def _follow(self) -> None:
        with lines_printed_by_this_thread(self._on_line):
            for delay in [*RETRY_DELAYS_SECONDS, None]:
                self.lines_streamed = 0
                try:
                    self.client.jobs.stream(self.job_name)
                    return
                except Exception as error:  # a failed job ends its stream with an exception: keep it for the report
                    if not is_transient(error) or delay is None:
                        self.stream_errors.append(error)
                        return
                time.sleep(delay)


def _poll_until_ended(
    client: Any, job_name: str, timeout_seconds: float | None, cancel_timeout_seconds: float, job_log: _JobLog, logger: Any
) -> Any:
    """Polls with backoff, reporting each new status as progress; cancels the job at the timeout. Returns the ended job."""
    shown = job_log.shown
    if shown.progress is None:  # a retry goes on with the artifact its first try made
        shown.progress = create_progress_artifact(progress=0.0, description=f"Job {job_name}")
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    delay = 1.0
    while True:
        job = client.jobs.get(job_name)
        if job.status != shown.status:
            shown.status = job.status
            logger.info("Job %s is %s", job_name, job.status)
            update_progress_artifact(shown.progress, STATUS_PROGRESS.get(job.status, 100.0))
        if job.status in TERMINAL_STATUSES:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise _timed_out(client, job_name, job.status, timeout_seconds, cancel_timeout_seconds, logger)
        # the stream returns when the job ends, so a short job is not left waiting for the next poll
        job_log.join(timeout=delay)
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


def _timed_out(
    client: Any, job_name: str, status: str, timeout_seconds: float, cancel_timeout_seconds: float, logger: Any
) -> JobTimeoutError:
    """Cancel the job, waiting at most ``cancel_timeout_seconds``; the error says what the timeout left behind."""
    logger.info("Job %s is still %s after %g s: canceling it", job_name, status, timeout_seconds)
    poller = client.jobs.begin_cancel(job_name)
    try:
        # Azure's poller returns at the bound, localml's raises TimeoutError: the job's status tells either way
        poller.result(timeout=cancel_timeout_seconds)
    except TimeoutError:
        pass
    left = client.jobs.get(job_name).status
    if left == "Canceled":
        return JobTimeoutError(f"Job {job_name} was still {status} after {timeout_seconds:g} s, so it was canceled.")
    if left in TERMINAL_STATUSES:
        return JobTimeoutError(f"Job {job_name} was still {status} after {timeout_seconds:g} s; asked to cancel, it ended {left} first.")
    return JobTimeoutError(
        f"Job {job_name} was still {status} after {timeout_seconds:g} s. It was asked to cancel, but after "
        f"{cancel_timeout_seconds:g} s more it is still {left}, and may still be running: {_how_to_reach(job_name)}."
    )


def _how_to_reach(job_name: str) -> str:
    """What a user can do about a job this flow run left behind."""
    return (
        f"follow it with ml_client.jobs.get('{job_name}'), re-run the flow to re-attach to it, or stop it with "
        f"ml_client.jobs.begin_cancel('{job_name}')"
    )


def _job_failed_error(job_name: str, job: Any, job_log: _JobLog) -> JobFailedError:
    """The job's own error and the tail of its log, so the flow's failure says what went wrong without a download."""
    reason = str(job_log.stream_errors[0]) if job_log.stream_errors else (job.properties or {}).get("localml.error") or ""
    log_tail = "\n".join(job_log.tail)
    return JobFailedError(
        f"Job {job_name} ended {job.status}. {reason}\n--- last lines of its log ---\n{log_tail}\n--- "
        f"the full logs stay with the job: ml_client.jobs.download('{job_name}', all=True), or {job.studio_url}"
    )


@task(name="job_metrics", **TRANSIENT_RETRIES)
def job_metrics(workspace: str, job_name: str) -> dict[str, float]:
    """The latest value of each metric the job logged to its MLflow run (the run id is the job name).

    Example:
        ```python
        metrics = job_metrics("local", result.name)   # {"accuracy": 0.94, "AUC": 0.98}
        ```
    """
    return dict(tracking_client(workspace).get_run(job_name).data.metrics)


def _find_job(client: Any, name: str) -> Any | None:
    try:
        return client.jobs.get(name)
    except ResourceNotFoundError:
        return None


def _pin_latest_versions(client: Any, spec: JobSpec) -> JobSpec:
    """``azureml:name@latest`` becomes the version it means now, so the cache key follows new data versions."""
    pinned = {}
    for key, value in spec.data_inputs().items():
        if value.path.startswith("azureml:") and value.path.endswith("@latest"):
            name = value.path[len("azureml:"): -len("@latest")]
            version = client.data.get(name, label="latest").version
            pinned[key] = value.model_copy(update={"path": f"azureml:{name}:{version}"})
    return spec.with_data_inputs(pinned) if pinned else spec
