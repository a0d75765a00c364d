"""Environments: register a conda specification (with its pip section) as a versioned environment."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import get_run_logger, task
from pydantic import BaseModel, Field, field_validator

from tasks.registration import fingerprint, register_once
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client


class EnvironmentSpec(BaseModel):
    name: str = Field(description="Environment name")
    conda_file: str = Field(description="Local conda YAML file (dependencies, with a pip section)")
    image: str = Field("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest", description="Base image (Azure builds on it)")
    description: str | None = None

    @field_validator("conda_file")
    @classmethod
    def _readable(cls, path: str) -> str:
        check_conda_file(path)
        return path

    def to_environment(self):
        from azure.ai.ml.entities import Environment

        return Environment(name=self.name, conda_file=self.conda_file, image=self.image, description=self.description)


def check_conda_file(path: str) -> None:
    """Raise ValueError, saying what to fix, unless ``path`` is a YAML file with a ``dependencies`` list."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"Conda file '{path}' not found (looked in {Path.cwd()}). Give the path of a conda YAML file.")
    try:
        spec = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"Conda file '{path}' is not valid YAML: {error}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("dependencies"), list):
        raise ValueError(f"Conda file '{path}' needs a 'dependencies' list (for example: [python=3.11, pip, {{pip: [...]}}]).")


def is_conda_file(environment: str) -> bool:
    """An environment parameter naming a local conda YAML file rather than a registered environment."""
    return environment.endswith((".yml", ".yaml"))


@task(name="register_environment", **TRANSIENT_RETRIES)
def register_environment(workspace: str, spec: EnvironmentSpec) -> str:
    """Register the conda specification as an environment (the same content keeps its version); returns
    ``azureml:<name>:<version>`` for a job's ``environment``.

    Example:
        ```python
        env = register_environment("local", EnvironmentSpec(name="refine-env", conda_file="generated_code/job/conda_env.yml"))
        CommandJobSpec(..., environment=env)
        ```
    """
    digest = fingerprint({"spec": spec.model_dump(exclude={"conda_file"}), "conda": yaml.safe_load(Path(spec.conda_file).read_text())})
    environment, created = register_once(get_client(workspace).environments, spec.to_environment(), digest)
    already = "" if created else " (registered earlier with this content)"
    get_run_logger().info("Environment %s:%s from %s%s", environment.name, environment.version, spec.conda_file, already)
    return f"azureml:{environment.name}:{environment.version}"
