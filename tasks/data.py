"""Data assets: register a local file or folder once per content."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from amlkit.hashing import content_hash
from amlkit.references import AssetReference, is_local_path, parse_asset_reference
from tasks.registration import register_once
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client, is_local_client

CONTENT_HASH_TAG = "amlflows.content_hash"


class DataSpec(BaseModel):
    name: str = Field(description="Data asset name")
    path: str = Field(description="Local file or folder, or an existing azureml:name:version / azureml:name@latest")
    type: Literal["uri_file", "uri_folder", "mltable"] = "uri_file"
    description: str | None = None


    def to_data(self, content_hash: str) -> Any:
        """The ``Data`` entity registering this spec's local path, tagged with its content hash."""
        from azure.ai.ml.entities import Data

        return Data(
            name=self.name,
            path=str(Path(self.path).expanduser()),
            type=self.type,
            description=self.description,
            tags={CONTENT_HASH_TAG: content_hash},
        )


class DataRef(BaseModel):
    name: str
    version: str
    type: str

    @property
    def reference(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@task(name="register_data", **TRANSIENT_RETRIES)
def register_data(workspace: str, spec: DataSpec) -> DataRef:
    """Register a data asset, or return the version that already holds the same content.

    An ``azureml:`` reference is looked up (``@latest`` pinned to a version) instead of registered.

    Example:
        ```python
        data = register_data("local", DataSpec(name="diabetes", path="examples/data/diabetes", type="mltable"))
        data.reference   # "azureml:diabetes:1"
        ```
    """
    logger = get_run_logger()
    client = get_client(workspace)
    if spec.path.startswith("azureml:") and not spec.path.startswith("azureml://"):
        data = _asset_version(client, spec.path)
        logger.info("Using data asset %s", data.reference)
        return data
    local = Path(spec.path).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"Data path '{spec.path}' does not exist (looked in {Path.cwd()}). Fix the path.")
    digest = content_hash(local)
    asset, created = register_once(client.data, spec.to_data(digest), digest, tag=CONTENT_HASH_TAG)
    if created:
        logger.info("Registered data asset %s:%s", asset.name, asset.version)
    else:
        logger.info("Data asset %s:%s already holds this content", asset.name, asset.version)
    return DataRef(name=asset.name, version=asset.version, type=spec.type)


@task(name="resolve_data", **TRANSIENT_RETRIES)
def resolve_data(workspace: str, reference: str) -> DataRef:
    """The registered version ``azureml:<name>:<version>`` or ``azureml:<name>@latest`` names now.

    Example:
        ```python
        resolve_data("local", "azureml:diabetes@latest").reference   # "azureml:diabetes:2"
        ```
    """
    return _asset_version(get_client(workspace), reference)


def check_data_reference(reference: str) -> AssetReference:
    """The data version a reference names, read without a workspace; a ValueError that shows its forms otherwise.

    Example:
        ```python
        check_data_reference("azureml:diabetes@latest")   # AssetReference("diabetes", label="latest")
        check_data_reference("diabetes:2")   # ValueError: ... use azureml:<name>:<version> or azureml:<name>@latest.
        ```
    """
    parsed = parse_asset_reference(reference)
    if parsed is None:
        raise ValueError(f"'{reference}' is not a data asset reference: use azureml:<name>:<version> or azureml:<name>@latest.")
    return parsed


def _asset_version(client: Any, reference: str) -> DataRef:
    from azure.core.exceptions import ResourceNotFoundError

    parsed = check_data_reference(reference)
    try:
        asset = client.data.get(parsed.name, version=parsed.version, label=parsed.label)
    except ResourceNotFoundError as error:
        raise ValueError(f"Data asset {reference} is not registered ({error}). Register it first, or fix the name.") from None
    return DataRef(name=asset.name, version=asset.version, type=str(asset.type))


def check_data_path(path: str) -> None:
    """A local data path must exist; references and URIs are the workspace's to check.

    Example:
        ```python
        check_data_path("examples/data/diabetes.csv")   # raises ValueError if the file is missing
        ```
    """
    if is_local_path(path) and not Path(path).exists():
        raise ValueError(f"Data path '{path}' not found (looked in {Path.cwd()}). Give a file or folder, or azureml:NAME:VERSION.")


def read_table(client: Any, source: str) -> Any:
    """The rows of a local MLTable folder, or (on localml) of an ``azureml:<name>:<version>`` / ``@latest`` asset.

    On Azure, reading an asset needs Azure's ``mltable`` package and credentials in this process: a review takes
    local folders there (and registers them); drift monitoring does not run on Azure yet.
    """
    from amlkit.mltable import load_mltable

    if source.startswith("azureml:"):
        if not is_local_client(client):
            raise ValueError(
                f"'{source}': reading an Azure data asset in this process needs Azure's mltable package and "
                "credentials, which amlflows does not set up yet. Give a local MLTable folder where the flow takes one "
                "(rai_review's train and test data, registered for you); monitor reads assets on localml only, for now."
            )
        return client.data.to_dataframe(source)
    if not (Path(source) / "MLTable").is_file():
        raise ValueError(f"'{source}' is not an MLTable folder (no MLTable file there; looked in {Path.cwd()}).")
    return load_mltable(source)
