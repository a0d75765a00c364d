"""Turning an Azure ML command job into something this machine can run.

Everything here happens at submission, in the caller's process, so a bad spec
fails before a job exists: unknown ``${{inputs.x}}`` names, missing paths,
unknown assets or compute. Local paths are uploaded (copied by content) as Azure
uploads them, so editing a file after submitting never changes a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.ai.ml import Input, Output

from amlkit.references import parse_asset_reference, parse_azureml_uri, reference_of_asset_id
from localml.errors import LocalMLValidationError
from localml.operations.data import DATA_TYPES, check_local_data
from localml.operations.models import MODEL_TYPES

OUTPUT_TYPES = ("uri_folder", "uri_file", "mlflow_model", "custom_model", "mltable")
#: What a job can read: data, and models (a pipeline node reads the model an earlier node wrote).
INPUT_TYPES = DATA_TYPES + MODEL_TYPES


@dataclass
class PreparedCommand:
    """What the runner needs, all plain data: it is stored with the job as JSON."""

    command: str
    code: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    input_types: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    output_types: dict[str, str] = field(default_factory=dict)
    environment_variables: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None


def resolve_input(workspace, assets: dict, job_name: str, key: str, value: Any) -> tuple[Any, Any, str]:
    """One job input as (the stored spec value, the runtime value, its type).

    Literals stay literals. Data and model inputs become azureml:// URIs (or pinned asset references)
    for the spec and local paths for the runtime; ``@latest`` is pinned to a version, as Azure does.
    ``assets`` holds the operations that resolve references: ``{"data": ..., "model": ...}``.
    """
    if not isinstance(value, Input):
        if isinstance(value, (int, float, str, bool)) or value is None:
            return value, value, type(value).__name__
        raise LocalMLValidationError(
            f"Input '{key}' of job '{job_name}' is a {type(value).__name__}; give a number, string, boolean or an Input."
        )
    input_type = str(value.type)
    if input_type not in INPUT_TYPES:
        if value.path is None and value.default is not None:
            return value.default, value.default, input_type
        raise LocalMLValidationError(
            f"Input '{key}' of job '{job_name}' has type '{input_type}'; localml data and model inputs are {', '.join(INPUT_TYPES)}."
        )
    path = str(value.path or "")
    if not path:
        raise LocalMLValidationError(f"Input '{key}' of job '{job_name}' has no path.")
    path = reference_of_asset_id(path) or path  # Input(path=data.id), as Azure's samples write it
    what = f"Input '{key}' of job '{job_name}'"
    if parse_asset_reference(path) is None and not Path(path).expanduser().exists() and parse_asset_reference(path, require_prefix=False):
        path = f"azureml:{path}"  # the SDK's YAML loader drops the azureml: prefix of an asset reference (name:version)
    reference = parse_asset_reference(path)
    if reference is not None:
        operations = assets["model" if input_type in MODEL_TYPES else "data"]
        record = operations.resolve_reference(path)
        if record["type"] != input_type:
            raise LocalMLValidationError(
                f"{what} is declared {input_type}, but {operations.title.lower()} '{record['name']}:{record['version']}' is "
                f"{record['type']}. Declare the input as {record['type']} or register it as {input_type}."
            )
        spec_path = f"azureml:{record['name']}:{record['version']}"
        local = workspace.resolve_uri(record["path"])
    elif parse_azureml_uri(path) is not None:
        spec_path, local = path, workspace.resolve_uri(path)
        check_local_data(local, input_type, what)
    else:
        local = workspace.resolve_uri(path)
        check_local_data(local, input_type, what)
        spec_path = workspace.upload(local)
        local = workspace.resolve_uri(spec_path)
    return Input(type=input_type, path=spec_path), str(local), input_type


def output_uri(job_name: str, key: str, output: Output | None) -> tuple[str, str]:
    """Where a named output goes (Azure's default datastore layout), and its type."""
    output_type = str(getattr(output, "type", None) or "uri_folder")
    if output_type not in OUTPUT_TYPES:
        raise LocalMLValidationError(
            f"Output '{key}' of job '{job_name}' has type '{output_type}'; use one of: {', '.join(OUTPUT_TYPES)}."
        )
    path = getattr(output, "path", None)
    if path:
        if parse_azureml_uri(str(path)) is None:
            raise LocalMLValidationError(
                f"Output '{key}' of job '{job_name}' has path '{path}'; localml writes outputs to "
                "azureml://datastores/<name>/paths/<path> URIs only (or leave path empty)."
            )
        return str(path), output_type
    return f"azureml://datastores/workspaceblobstore/paths/azureml/{job_name}/{key}/", output_type


def upload_code(workspace, code: str | Path | None) -> str | None:
    """Snapshot the code folder (or file) and name it as Azure does, a code asset ``azureml:<hash>:1``."""
    if code is None:
        return None
    code = str(code)
    if code.startswith("azureml:"):
        parsed = parse_asset_reference(code)
        if parsed is None or workspace.catalog.get_asset("code", parsed.name, parsed.version or "1") is None:
            raise LocalMLValidationError(f"Code '{code}' is not a code snapshot of this workspace; give a local folder.")
        return code
    local = Path(code).expanduser().resolve()
    if not local.exists():
        raise LocalMLValidationError(f"Code path '{code}' does not exist (resolved to {local}).")
    uri = workspace.upload(local)
    name = uri.split("/LocalUpload/")[1].split("/")[0]
    with workspace.catalog.transaction() as db:
        if workspace.catalog.get_asset("code", name, "1", db=db) is None:
            workspace.catalog.insert_asset(db, "code", name, "1", {"path": uri})
    return f"azureml:{name}:1"
