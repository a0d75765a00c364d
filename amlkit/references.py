"""Azure ML's ways of naming things, parsed: asset references and ``azureml://`` URIs."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ASSET_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?::(?P<version>[A-Za-z0-9_.\-]+)|@(?P<label>[A-Za-z0-9_\-]+))$")
_DATASTORE_URI = re.compile(r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?datastores/(?P<datastore>[^/]+)/paths/(?P<path>.*)$", re.IGNORECASE)
_JOB_ARTIFACT_URI = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/artifacts/paths/(?P<path>.*)$")
_JOB_OUTPUT_URI = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)/?(?P<path>.*)$")
#: An asset's ARM id, what ``data.id`` / ``model.id`` hold (Azure's SDK sometimes puts ``azureml:`` before it)
_ARM_ASSET_ID = re.compile(
    r"^(?:azureml:)?/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/"
    r"[^/]+/(?P<kind>data|models)/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AssetReference:
    name: str
    version: str | None = None
    label: str | None = None

    def __str__(self) -> str:
        return f"azureml:{self.name}:{self.version}" if self.version else f"azureml:{self.name}@{self.label}"


def parse_asset_reference(value: str, *, require_prefix: bool = True) -> AssetReference | None:
    """``azureml:name:version`` or ``azureml:name@label`` as a reference; None for anything else."""
    body = value.removeprefix("azureml:")
    if (require_prefix and body == value) or value.startswith("azureml://"):
        return None
    # the prefix is taken off first: matched as optional, it would read "azureml:x" as version x of "azureml"
    match = _ASSET_REF.match(body)
    if not match:
        return None
    return AssetReference(match["name"], match["version"], match["label"])


def reference_of_asset_id(value: str) -> str | None:
    """``azureml:name:version`` for an asset's ARM id (``Input(path=data.id)``); None for anything else."""
    match = _ARM_ASSET_ID.match(value)
    return f"azureml:{match['name']}:{match['version']}" if match else None


@dataclass(frozen=True)
class DatastorePath:
    datastore: str
    path: str


@dataclass(frozen=True)
class JobArtifactPath:
    job: str
    path: str


@dataclass(frozen=True)
class JobOutputPath:
    job: str
    output: str
    path: str


def parse_azureml_uri(value: str) -> DatastorePath | JobArtifactPath | JobOutputPath | None:
    """The parts of an ``azureml://`` URI localml understands; None for anything else."""
    if match := _DATASTORE_URI.match(value):
        return DatastorePath(match["datastore"], match["path"])
    if match := _JOB_ARTIFACT_URI.match(value):
        return JobArtifactPath(match["job"], match["path"].strip("/"))
    if match := _JOB_OUTPUT_URI.match(value):
        return JobOutputPath(match["job"], match["output"], match["path"].strip("/"))
    return None


def parse_run_artifact(value: str) -> JobArtifactPath | None:
    """A run's artifact path, from ``azureml://jobs/<job>/outputs/artifacts/paths/<path>`` or ``runs:/<run_id>/<path>``
    (a job's MLflow run id is the job's name); None for anything else."""
    if value.startswith("runs:/"):
        run_id, _, path = value[len("runs:/"):].partition("/")
        return JobArtifactPath(run_id, path.strip("/"))
    parsed = parse_azureml_uri(value)
    return parsed if isinstance(parsed, JobArtifactPath) else None


def logged_model_id(uri: str) -> str:
    """The id in ``models:/<model_id>``, an MLflow 3 logged model (``mlflow.<flavor>.log_model`` returns it)."""
    model_id = uri.removeprefix("models:/").strip("/")
    if not model_id or "/" in model_id:
        from amlkit.errors import SpecError  # here: it loads the whole azure.ai.ml SDK, which a job's runner does without

        raise SpecError(
            f"'{uri}' is not a logged model's URI. Give models:/<model_id> (the model_id of what log_model returned); "
            "a registered version is read as azureml:<name>:<version>, and a run's model as runs:/<run_id>/<name>."
        )
    return model_id


def is_local_path(value: str) -> bool:
    """A path on this machine, as opposed to an asset reference or a URI (``azureml:``, ``runs:/``, ``models:/``, ``https://``...)."""
    return not value.startswith(("azureml:", "runs:/", "models:/")) and "://" not in value
