"""``ml_client.jobs``: submit, follow, cancel and download command jobs."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from azure.ai.ml.entities import CommandJob, Job, JobService, PipelineJob
from azure.ai.ml.entities._builders import BaseNode
from azure.ai.ml.entities._job.automl.automl_job import AutoMLJob
from azure.ai.ml.entities._job.sweep.sweep_job import SweepJob
from azure.ai.ml.exceptions import ErrorCategory, JobException
from azure.core.exceptions import ResourceNotFoundError

from amlkit import names
from amlkit.placeholders import check_placeholders
from amlkit.sweep.space import parameter_names
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, already_exists, not_found
from localml.execution.command import (
    PreparedCommand,
    output_uri,
    resolve_input,
    upload_code,
)
from localml.execution.drivers import driver_command
from amlkit.processes import is_alive, start_time
from localml.execution.processes import cancel_children, request_cancel, stop_group, wait_for_exit
from localml.pipeline import submit as pipeline
from localml.pollers import WaitingPoller
from localml.store import TERMINAL_STATUSES
from localml.sweep import submit as sweep
from localml.sweep.submit import stored_spec, sweep_settings, trial_template
from localml.workspace import LocalWorkspace, contained

# Azure's SDK hides its "experimental class" notices when it builds entities from the service's replies;
# localml builds entities from stored specs, the same step, so it hides them too.
logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)

STREAM_POLL_SECONDS = 0.5
#: A job recorded this long ago with no runner's pid is taken for dead: its submitter was killed after writing the
#: job's row and before starting the runner, or the runner died starting up. Alive, they record the pid within
#: seconds (the runner records its own as soon as Python has loaded it); the rest is margin for a loaded machine.
#: Longer would keep a re-run waiting on a job that can never run. Both record the pid only on a job still
#: active, so one merely slow cannot bring a job reported Failed back to life.
RUNNER_START_GRACE_SECONDS = 30.0


class JobOperations:
    def __init__(self, workspace: LocalWorkspace, data, models, environments, compute, components):
        self._workspace = workspace
        self._catalog = workspace.catalog
        self._data = data
        self._assets = {"data": data, "model": models}  # what resolves a job input's asset reference
        self._components = components
        self._environments = environments
        self._compute = compute

    # -- submit ---------------------------------------------------------------------------
    def create_or_update(
        self,
        job: Job,
        *,
        description: str | None = None,
        compute: str | None = None,
        tags: dict | None = None,
        experiment_name: str | None = None,
        **kwargs,
    ) -> Job:
        """Validate and submit ``job``; it runs in its own process and outlives the caller."""
        if isinstance(job, BaseNode) and hasattr(job, "_to_job"):
            job = job._to_job()
        job.description = description or job.description
        job.compute = compute or job.compute
        job.tags = {**(job.tags or {}), **(tags or {})}
        job.experiment_name = experiment_name or job.experiment_name or _default_experiment()
        name = self._submit(job)
        return self.get(name)

    def submit_child(self, job: CommandJob, parent: str) -> Job:
        """Submit a child of ``parent``: a sweep's trial or a pipeline's node (localml's own use: Azure's services do this)."""
        return self.get(self._submit(job, parent=parent))

    def submit_batch(self, job: CommandJob, record: dict) -> Job:
        """Submit the job a batch endpoint's invoke starts (localml's own use: Azure's service does this); ``record``
        joins what its runner reads: the endpoint and deployment, and the summary its driver reports."""
        return self.get(self._submit(job, extra_record=record))

    def _submit(self, job: Job, parent: str | None = None, extra_record: dict | None = None) -> str:
        job.name = job.name or _generated_name()
        names.JOB.check(job.name)
        # the experiment names a folder of the MLflow store (<root>/mlartifacts/<name>): checked before it is made
        names.EXPERIMENT.check(job.experiment_name)
        if self._catalog.get_job(job.name) is not None:  # an early answer, before any upload; insert_job decides
            raise _job_exists(job.name)
        spec, record = self._prepare(job)
        record.update(extra_record or {})
        # the experiment, not the run: a submitter that loses the race below must leave nothing of the job behind
        record["experiment_id"] = self._workspace.tracking.experiment_id(job.experiment_name)
        # a sweep's or pipeline's own process only schedules its children, so it takes no instance of the compute
        queue = "local" if record.get("max_instances") is None else spec.get("compute") or "local"
        if not self._catalog.insert_job(job.name, queue, spec, record, parent=parent):
            raise _job_exists(job.name)
        self._start(job, record["experiment_id"], parent)
        return job.name

    def _start(self, job: Job, experiment_id: str, parent: str | None) -> None:
        """Create the reserved job's MLflow run and start its runner; if either fails, the job ends Failed with the reason."""
        run_tags = {"localml.job_type": job.type, **({"mlflow.parentRunId": parent} if parent else {})}
        try:
            self._workspace.tracking.create_run(job.name, job.display_name or job.name, run_tags, experiment_id=experiment_id)
            self._start_runner(job.name)
        except Exception as error:
            self._fail_unstarted(job.name, error)
            raise

    def _fail_unstarted(self, name: str, error: Exception) -> None:
        reason = (
            f"localml could not start the job: {type(error).__name__}: {error}. "
            "Submit it again under another name (this one stays with the failed job)."
        )
        self._catalog.update_job(name, only_if_active=True, status="Failed", error=reason, ended_at=time.time())
        try:
            self._workspace.tracking.end_run(name, "Failed")
        except Exception as end_error:  # the job's status is recorded; the caller must see the first error, not this one
            logging.getLogger(__name__).warning("could not end MLflow run %s: %s", name, end_error)

    def _prepare(self, job: Job) -> tuple[dict, dict]:
        """The job's stored spec (local paths uploaded, ``@latest`` pinned) and what its runner needs."""
        if isinstance(job, CommandJob):
            return self._prepare_command(job)
        if isinstance(job, AutoMLJob):
            from localml.automl import (
                submit as automl,  # loads the featurization stack: for AutoML jobs only
            )

            with tempfile.TemporaryDirectory(prefix="localml-automl-") as staging:
                internal = automl.automl_command(job, self._data, Path(staging))
                _, record = self._prepare_command(internal)
            automl.pin_inputs(job, internal.inputs)
            record.update(summary_file="outputs/automl_summary.json", summary_properties=automl.SUMMARY_PROPERTIES)
            return job._to_dict(), record
        if isinstance(job, SweepJob):
            return self._prepare_sweep(job)
        if isinstance(job, PipelineJob):
            return self._prepare_pipeline(job)
        raise UnsupportedFeatureError(f"{type(job).__name__} jobs yet", "Command, AutoML, sweep and pipeline jobs run on localml today.")

    def _prepare_sweep(self, job: SweepJob) -> tuple[dict, dict]:
        settings = sweep_settings(job)
        template = trial_template(job)
        template_spec, template_record = self._prepare_command(template)
        config = {
            **settings,
            "root": str(self._workspace.root),
            "parent": job.name,
            "template": {k: template_spec.get(k) for k in ("command", "code", "environment", "inputs", "outputs", "compute", "environment_variables")},
            "parameters": sorted(parameter_names(settings["search_space"])),
        }
        with tempfile.TemporaryDirectory(prefix="localml-sweep-") as staging:
            _, record = self._prepare_command(driver_command(job, Path(staging), "sweep", config))
        record.update(max_instances=None, summary_file="outputs/sweep_summary.json", summary_properties=sweep.SUMMARY_PROPERTIES)
        return stored_spec(job, template_spec, settings), record

    def _prepare_pipeline(self, job: PipelineJob) -> tuple[dict, dict]:
        inputs = {k: resolve_input(self._workspace, self._assets, job.name, k, v)[0] for k, v in pipeline.input_values(job).items()}
        nodes = pipeline.plan(job, inputs, self._components.entity)
        templates = {}
        for node in nodes:  # each node's command job is checked (and its code uploaded) as if submitted now
            try:
                template = pipeline.node_template(job, node, templates)
                spec, _ = self._prepare_command(pipeline.node_job(template, stand_ins=True))
            except (LocalMLValidationError, ResourceNotFoundError) as error:
                raise pipeline.node_error(node.name, error) from None
            templates[node.name] = pipeline.pinned(template, spec)
        config = {
            "root": str(self._workspace.root),
            "workspace_name": self._workspace.name,
            "parent": job.name,
            "continue_on_step_failure": bool(job.settings.continue_on_step_failure),
            "nodes": [templates[node.name] for node in nodes],
        }
        with tempfile.TemporaryDirectory(prefix="localml-pipeline-") as staging:
            _, record = self._prepare_command(driver_command(job, Path(staging), "pipeline", config))
        # the pipeline's outputs are its nodes' outputs: azureml://jobs/<pipeline>/outputs/<name> resolves to them
        outputs = pipeline.output_uris(nodes, templates)
        record.update(max_instances=None, outputs={k: o["path"] for k, o in outputs.items()})
        record["prepared"]["output_types"] = {k: o["type"] for k, o in outputs.items()}
        return pipeline.stored_spec(job, inputs, templates), record

    def _prepare_command(self, job: CommandJob) -> tuple[dict, dict]:
        inputs = dict(job.inputs or {})
        outputs = dict(job.outputs or {})
        check_placeholders(job.command, inputs, outputs, job.name)
        compute = _strip_prefix(job.compute)
        max_instances = self._compute.max_instances(compute)
        if not job.environment:
            raise LocalMLValidationError(
                f"Job '{job.name}' has no environment. Name one, for example 'AzureML-sklearn-1.5@latest' "
                "(curated names run on the current interpreter)."
            )
        environment = _strip_prefix(job.environment if isinstance(job.environment, str) else _environment_ref(job.environment))
        runtime, warnings = self._environments.runtime_for(environment)
        prepared = PreparedCommand(command=job.command, code=upload_code(self._workspace, job.code))
        spec_inputs = {}
        for key, value in inputs.items():
            spec_inputs[key], prepared.inputs[key], prepared.input_types[key] = resolve_input(
                self._workspace, self._assets, job.name, key, value
            )
        record_outputs = {}
        for key, value in outputs.items():
            record_outputs[key], prepared.output_types[key] = output_uri(job.name, key, value)
            self._workspace.resolve_uri(record_outputs[key])  # refused now if it leads outside its datastore
        prepared.environment_variables = {k: str(v) for k, v in (job.environment_variables or {}).items()}
        prepared.timeout = getattr(job.limits, "timeout", None) if job.limits else None
        job.inputs = spec_inputs
        job.code = prepared.code
        job.environment = environment
        spec = job._to_dict()
        record = {
            "prepared": dataclasses.asdict(prepared),
            "outputs": record_outputs,
            "max_instances": max_instances,
            **runtime,
            "warnings": warnings,
            "workspace_name": self._workspace.name,
        }
        return spec, record

    def _start_runner(self, name: str) -> None:
        system_logs = self._workspace.job_dir(name) / "system_logs"
        system_logs.mkdir(parents=True, exist_ok=True)
        with open(system_logs / "runner.txt", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "localml.execution.runner", str(self._workspace.root), name],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        if not self._catalog.update_job(name, only_if_active=True, pid=process.pid, pid_started=start_time(process.pid)):
            # the job was reported dead meanwhile (no runner for RUNNER_START_GRACE_SECONDS); the runner sees that too and exits
            raise RuntimeError(
                f"Job '{name}' took more than {RUNNER_START_GRACE_SECONDS:g} s to start its runner (is the machine "
                "overloaded?) and was reported Failed meanwhile. Submit it again under another name."
            )

    # -- read -----------------------------------------------------------------------------
    def get(self, name: str) -> Job:
        return self._to_entity(self._current(name))

    def list(self, *, parent_job_name: str | None = None, **kwargs) -> Iterator[Job]:
        return iter([self._to_entity(self._checked(row)) for row in self._catalog.list_jobs(parent_job_name)])

    def _current(self, name: str) -> dict:
        row = self._catalog.get_job(name)
        if row is None:
            raise not_found("Job", name)
        return self._checked(row)

    def _checked(self, row: dict) -> dict:
        """A job still marked active whose runner is gone has died: report it Failed, with the reason."""
        if row["status"] in TERMINAL_STATUSES:
            return row
        if row["pid"] is None:
            return self._checked_unstarted(row)
        if is_alive(row["pid"], row["pid_started"]):
            return row
        error = (
            f"The job's process (pid {row['pid']}) ended without reporting a final status: it was killed "
            "or the machine restarted. Submit the job again."
        )
        # a runner canceled before it could handle SIGTERM (still starting up) dies of it: that job was canceled
        status, error = ("Canceled", None) if row["status"] == "CancelRequested" else ("Failed", error)
        if self._catalog.update_job(row["name"], only_if_active=True, status=status, error=error, ended_at=time.time()):
            stop_group(row["pid"])
            cancel_children(self._catalog, row["name"])
            self._workspace.tracking.end_run(row["name"], status)
        return self._catalog.get_job(row["name"])

    def _checked_unstarted(self, row: dict) -> dict:
        """A job with no runner long after it was recorded never will have one: its submitter died in between."""
        started_before = time.time() - RUNNER_START_GRACE_SECONDS
        if row["created_at"] >= started_before:
            return row
        error = (
            "The job's runner never started: its submitter stopped (it was killed, or the machine restarted) between "
            f"recording the job and starting its runner, or the runner died starting up; {RUNNER_START_GRACE_SECONDS:g} s "
            "have passed. Submit the job again."
        )
        status, error = ("Canceled", None) if row["status"] == "CancelRequested" else ("Failed", error)
        if self._catalog.end_unstarted_job(row["name"], started_before, status, error):
            self._workspace.tracking.end_run(row["name"], status)  # a run created before the submitter died
        return self._catalog.get_job(row["name"])

    def _to_entity(self, row: dict) -> Job:
        job = Job._load(data=row["spec"])
        job._status = row["status"]
        experiment_id = row["record"]["experiment_id"]
        url = self._workspace.tracking.run_url(experiment_id, row["name"])
        job.services = {
            "Studio": JobService(endpoint=url, type="Studio"),
            "Tracking": JobService(endpoint=self._workspace.tracking.uri, type="Tracking"),
        }
        job.properties = {
            **(job.properties or {}),
            **row["record"].get("properties", {}),
            "localml.error": row["error"] or "",
            "mlflow.experiment_id": experiment_id,
        }
        job._id = f"/subscriptions/local/resourceGroups/local/workspaces/{self._workspace.name}/jobs/{row['name']}"
        return job

    # -- follow ---------------------------------------------------------------------------
    def stream(self, name: str) -> None:
        """Print the job's log as it grows until the job ends, as Azure's ``jobs.stream`` does.

        Raises ``JobException`` with the job's error if it failed.
        """
        row = self._current(name)
        log_path = self._workspace.job_dir(name) / "user_logs" / "std_log.txt"
        print(f"RunId: {name}\nWeb View: {self._to_entity(row).studio_url}\n", flush=True)
        print("Streaming user_logs/std_log.txt\n" + "=" * 32 + "\n", flush=True)
        position = 0
        while True:
            row = self._current(name)
            position = _print_new(log_path, position)
            if row["status"] in TERMINAL_STATUSES:
                break
            wait_for_exit(row["pid"], STREAM_POLL_SECONDS)
        print(f"\nExecution Summary\n=================\nRunId: {name}\nStatus: {row['status']}", flush=True)
        if row["status"] == "Failed":
            message = row["error"] or f"Job {name} failed."
            raise JobException(message=message, no_personal_data_message="Job failed", error_category=ErrorCategory.USER_ERROR)

    def begin_cancel(self, name: str) -> WaitingPoller:
        """Ask the job's runner to stop the job; the poller's ``.result()`` waits until it is Canceled."""
        self._current(name)
        request_cancel(self._catalog, name)
        return WaitingPoller(lambda: self._current(name)["status"] in TERMINAL_STATUSES, lambda: None)

    def download(self, name: str, *, download_path: str | os.PathLike = ".", output_name: str | None = None, all: bool = False) -> None:
        """Copy the job's artifacts (logs and ./outputs) to ``download_path/artifacts`` and named outputs to
        ``download_path/named-outputs/<name>``, as Azure lays them out."""
        row = self._current(name)
        if row["status"] not in TERMINAL_STATUSES:
            raise JobException(
                message=f"Job {name} is {row['status']}; it can be downloaded once it has ended.",
                no_personal_data_message="Job not terminal",
                error_category=ErrorCategory.USER_ERROR,
            )
        target = Path(download_path)
        outputs = row["record"]["outputs"]
        if output_name is not None and output_name not in outputs:
            raise not_found(f"Output of job '{name}'", output_name, known=sorted(outputs))
        if output_name is None or all:
            run_artifacts = self._workspace.run_artifact_path(name, "")
            if run_artifacts.exists():
                shutil.copytree(run_artifacts, target / "artifacts", dirs_exist_ok=True)
        for key in sorted(outputs) if all else [output_name] if output_name else []:
            source = self._workspace.resolve_uri(outputs[key])
            folder = contained(target / "named-outputs", key, f"Output '{key}' of job '{name}' downloaded to")
            if source.is_dir():
                shutil.copytree(source, folder, dirs_exist_ok=True)
            elif source.exists():
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, folder / source.name)


def _print_new(path: Path, position: int) -> int:
    if not path.exists():
        return position
    with open(path, "rb") as log:
        log.seek(position)
        chunk = log.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    if complete:
        sys.stdout.write(complete.decode(errors="replace"))
        sys.stdout.flush()
    return position + len(complete)


def _job_exists(name: str):
    return already_exists("Job", name, f"Job names are unique: follow it with jobs.get('{name}'), or submit with another name.")


def _strip_prefix(value: str | None) -> str | None:
    return value.removeprefix("azureml:") if isinstance(value, str) else value


def _environment_ref(environment) -> str:
    if environment.name and environment.version:
        return f"{environment.name}:{environment.version}"
    raise UnsupportedFeatureError(
        "inline (anonymous) environments yet", "Register the environment with ml_client.environments.create_or_update and name it."
    )


def _default_experiment() -> str:
    """Azure names the experiment after the current folder when none is given (made to follow the experiment rule)."""
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", Path.cwd().name).lstrip("_-")[: names.EXPERIMENT.max_length]
    return name or "Default"


def _generated_name() -> str:
    import coolname

    return f"{coolname.generate_slug(2).replace('-', '_')}_{secrets.token_hex(5)}"
