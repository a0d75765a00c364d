"""The job an ``invoke`` starts: localml's batch driver as a command job, with the deployment's settings in its
code folder (``batch.json``), the input resolved and checked now, and its output ``score``.

Everything that can be known before the job runs is checked here, in the caller's process: the input exists and
holds files. What the files hold is the driver's business (a bad file fails its mini-batch, not the job).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from azure.ai.ml import Input, Output, command

from amlkit import names
from amlkit.batch import files_to_score
from localml.errors import LocalMLValidationError
from localml.execution.command import resolve_input

#: The command job's input and output: ``jobs.download(name, output_name="score")`` as on Azure
INPUT_KEY, OUTPUT_KEY = "input_data", "score"
SUMMARY_FILE = "outputs/batch_summary.json"
SUMMARY_PROPERTIES = ("mini_batches", "mini_batches_succeeded", "mini_batches_failed", "files", "files_failed",
                      "rows_succeeded", "rows_failed")


def submit(workspace, jobs, endpoint: dict, deployment: dict, key: str, data: Input, *, job_name: str | None = None,
           experiment_name: str | None = None):
    """Submit the scoring job of ``deployment`` (a catalog row) over ``data``; the submitted job."""
    name = names.JOB.check(job_name or f"batchjob-{uuid.uuid4()}")
    spec_input, local, input_type = resolve_input(workspace, jobs._assets, name, key, data)
    files = files_to_score(Path(local), input_type)
    if not files:
        raise LocalMLValidationError(
            f"Input '{key}' of the invoke of batch endpoint '{endpoint['name']}' ({data.path}) holds no files to score: "
            "give a folder with the CSV or parquet files (a model deployment scores every file in it)."
        )
    settings = deployment["settings"]
    compute_instances = jobs._compute.max_instances(deployment["compute"]) or settings["instance_count"]
    config = {
        "endpoint": endpoint["name"], "deployment": deployment["name"],
        "model_kind": deployment["model_kind"], "model_dir": str(workspace.resolve_uri(deployment["model_path"])),
        "code_dir": str(workspace.resolve_uri(deployment["code_path"])) if deployment["code_path"] else None,
        "scoring_script": deployment["scoring_script"],
        # each instance runs max_concurrency_per_instance workers; a cluster lends at most max_instances instances
        "instances": min(settings["instance_count"], compute_instances),
        **{k: settings[k] for k in ("mini_batch_size", "max_concurrency_per_instance", "error_threshold", "output_action",
                                    "output_file_name", "logging_level", "retry_settings")},
    }
    with tempfile.TemporaryDirectory(prefix="localml-batch-") as staging:
        folder = Path(staging) / "batch"
        folder.mkdir()
        (folder / "batch.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        job = command(
            name=name,
            display_name=name,
            code=str(folder),
            command=f"python -m localml.batch.driver --config batch.json --input ${{{{inputs.{INPUT_KEY}}}}} "
                    f"--output ${{{{outputs.{OUTPUT_KEY}}}}}",
            inputs={INPUT_KEY: spec_input},
            outputs={OUTPUT_KEY: Output(type="uri_folder")},
            environment=deployment["environment"] or "AzureML-batch@latest",
            environment_variables=settings["environment_variables"] or None,
            compute=deployment["compute"],
            experiment_name=experiment_name or endpoint["name"],
            description=f"Batch scoring with deployment '{deployment['name']}' of endpoint '{endpoint['name']}'",
        )._to_job()
        record = {
            "batch": {"endpoint": endpoint["name"], "deployment": deployment["name"]},
            "summary_file": SUMMARY_FILE, "summary_properties": SUMMARY_PROPERTIES,
        }
        return jobs.submit_batch(job, record)

