"""Models: register a job's model output as a versioned model, find a version, tag it."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from amlkit.hashing import content_hash
from amlkit.references import AssetReference, is_local_path, parse_asset_reference
from tasks.registration import fingerprint, register_once
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client, workspace_identity

#: The tag (``champion=true``) that marks the version in service; ``azureml:<name>@champion`` names it.
CHAMPION = "champion"


class ModelSpec(BaseModel):
    name: str = Field(description="Model name")
    path: str = Field(description="azureml://jobs/JOB/outputs/artifacts/paths/FOLDER, runs:/RUN/PATH, or a local folder")
    type: Literal["mlflow_model", "custom_model"] = "mlflow_model"
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of_job_artifacts(cls, name: str, job_name: str, folder: str, tags: dict[str, str]) -> "ModelSpec":
        """The model a job saved in ``folder`` of its artifacts, by the URI Azure resolves to that folder."""
        return cls(name=name, path=f"azureml://jobs/{job_name}/outputs/artifacts/paths/{folder.strip('/')}", tags=tags)

    def to_model(self) -> Any:
        """The ``Model`` entity this spec describes."""
        from azure.ai.ml.entities import Model

        return Model(name=self.name, path=self.path, type=self.type, description=self.description, tags=self.tags)


class ModelRef(BaseModel):
    name: str
    version: str
    type: str
    job_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"azureml:{self.name}:{self.version}"

    @classmethod
    def of(cls, model: Any) -> "ModelRef":
        """The reference to a ``Model`` entity the workspace returned."""
        return cls(name=model.name, version=model.version, type=str(model.type), job_name=getattr(model, "job_name", None),
                   tags=dict(model.tags or {}))


def _spec_payload(spec: ModelSpec) -> dict:
    """What a registration registers: the spec, and the content of its files when they are local."""
    payload = {"spec": spec.model_dump()}
    if is_local_path(spec.path):
        payload["content"] = content_hash(spec.path)
    return payload


def _register_cache_key(context: Any, parameters: dict) -> str:
    payload = {"workspace": workspace_identity(parameters["workspace"]), **_spec_payload(parameters["spec"])}
    return "register_model/1/" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@task(name="register_model", cache_key_fn=_register_cache_key, persist_result=True, **TRANSIENT_RETRIES)
def register_model(workspace: str, spec: ModelSpec) -> ModelRef:
    """Register a model version from a job output (cached: the same job's model is registered once).

    Example:
        ```python
        model = register_model(
            "local",
            ModelSpec(name="diabetes-classifier", path=f"azureml://jobs/{job.name}/outputs/artifacts/paths/outputs/model"),
        )
        model.reference   # "azureml:diabetes-classifier:1"
        ```
    """
    model, created = register_once(get_client(workspace).models, spec.to_model(), fingerprint(_spec_payload(spec)))
    if created:
        get_run_logger().info("Registered model %s:%s from %s", model.name, model.version, spec.path)
    else:  # a retry after a lost reply, or a run whose cached result is gone
        get_run_logger().info("Model %s:%s holds %s already: not registered again", model.name, model.version, spec.path)
    return ModelRef(name=model.name, version=model.version, type=spec.type, job_name=getattr(model, "job_name", None))


def check_model_reference(reference: str) -> AssetReference:
    """The model a reference names, read without a workspace; a ValueError that shows the forms it may take otherwise.

    Example:
        ```python
        check_model_reference("azureml:diabetes-baseline@champion")   # AssetReference("diabetes-baseline", label="champion")
        check_model_reference("diabetes-baseline")   # ValueError: ... use azureml:<name>:<version>, ...
        ```
    """
    parsed = parse_asset_reference(reference, require_prefix=False)
    if parsed is None:
        raise ValueError(
            f"'{reference}' is not a model reference: use azureml:<name>:<version>, azureml:<name>@latest or azureml:<name>@{CHAMPION}."
        )
    return parsed


@task(name="resolve_model", **TRANSIENT_RETRIES)
def resolve_model(workspace: str, reference: str) -> ModelRef:
    """The registered version ``azureml:<name>:<version>`` or ``azureml:<name>@latest`` names now.

    Example:
        ```python
        model = resolve_model("local", "azureml:diabetes-baseline@latest")
        model.reference   # "azureml:diabetes-baseline:3"
        resolve_model("local", "azureml:diabetes-baseline@champion")   # the version tagged champion=true
        ```
    """
    parsed = check_model_reference(reference)
    client = get_client(workspace)
    try:
        if parsed.label == CHAMPION:
            model = _champion(client, parsed.name)
            if model is None:
                raise ValueError(f"Model {parsed.name} has no version tagged {CHAMPION}: run the retrain flow, or name a version.")
        else:
            model = client.models.get(parsed.name, version=parsed.version, label=parsed.label)
    except ResourceNotFoundError as error:
        raise ValueError(f"Model {reference} is not registered in workspace '{workspace}' ({error}).") from None
    return ModelRef.of(model)


@task(name="tag_model_version", **TRANSIENT_RETRIES)
def tag_model_version(workspace: str, model: ModelRef, tags: dict[str, str]) -> dict[str, str]:
    """Add ``tags`` to an existing model version (its files never change); returns all its tags.

    Example:
        ```python
        tag_model_version("local", model, {"rai_review": "passed"})
        ```
    """
    client = get_client(workspace)
    entity = client.models.get(model.name, version=model.version)
    entity.tags = {**(entity.tags or {}), **tags}
    updated = client.models.create_or_update(entity)
    get_run_logger().info("Tagged model %s:%s with %s", model.name, model.version, ", ".join(sorted(tags)))
    return dict(updated.tags or {})


@task(name="find_champion", **TRANSIENT_RETRIES)
def find_champion(workspace: str, name: str) -> ModelRef | None:
    """The version of ``name`` tagged ``champion=true``, or None when there is none (or no such model).

    Example:
        ```python
        champion = find_champion("local", "diabetes-baseline")
        ```
    """
    model = _champion(get_client(workspace), name)
    if model is None:
        return None
    return ModelRef.of(model)


@task(name="promote_model", **TRANSIENT_RETRIES)
def promote_model(workspace: str, candidate: ModelRef, previous: ModelRef | None, tags: dict[str, str]) -> ModelRef:
    """Tag ``candidate`` as the champion (with ``tags`` saying why) and take the tag off ``previous``.

    Example:
        ```python
        promote_model("local", candidate, champion, {"promoted_because": "AUC 0.97 > 0.95"})
        ```
    """
    client = get_client(workspace)
    if previous is not None:
        entity = client.models.get(previous.name, version=previous.version)
        entity.tags = {**(entity.tags or {}), CHAMPION: "false", "replaced_by": candidate.reference}
        client.models.create_or_update(entity)
    entity = client.models.get(candidate.name, version=candidate.version)
    entity.tags = {**(entity.tags or {}), **tags, CHAMPION: "true"}
    updated = client.models.create_or_update(entity)
    get_run_logger().info("%s is the champion now%s", candidate.reference, f" (was {previous.reference})" if previous else "")
    return candidate.model_copy(update={"tags": dict(updated.tags or {})})


def _champion(client: Any, name: str) -> Any | None:
    try:
        versions = list(client.models.list(name=name))
    except ResourceNotFoundError:
        return None
    champions = [m for m in versions if (m.tags or {}).get(CHAMPION) == "true"]
    return champions[-1] if champions else None
