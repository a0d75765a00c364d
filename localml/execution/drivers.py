"""The job a sweep or a pipeline runs as: its own process, localml's driver for that kind of job, which
submits the trials or nodes as child jobs and follows them."""

from __future__ import annotations

import json
from pathlib import Path

from azure.ai.ml import command


def driver_command(job, staging: Path, kind: str, config: dict):
    """The command job running ``python -m localml.<kind>.driver`` on ``config`` (a file in its code folder)."""
    folder = staging / kind
    folder.mkdir(parents=True, exist_ok=True)
    config_file = f"{kind}.json"
    (folder / config_file).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return command(
        name=job.name,
        code=str(folder),
        command=f"python -m localml.{kind}.driver --config {config_file}",
        environment=f"AzureML-{kind}@latest",
        experiment_name=job.experiment_name,
    )._to_job()
