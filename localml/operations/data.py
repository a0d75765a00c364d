"""``ml_client.data``: data assets (uri_file, uri_folder, mltable), and reading them as DataFrames."""

from __future__ import annotations

from pathlib import Path

from azure.ai.ml.entities import Data

from amlkit import names
from amlkit.mltable import MLTableError, load_mltable, read_mltable_spec
from amlkit.references import parse_azureml_uri
from localml.errors import LocalMLValidationError
from localml.operations._assets import (
    VersionedAssetOperations,
    check_type,
    file_asset_fields,
)

DATA_TYPES = ("uri_file", "uri_folder", "mltable")


class DataOperations(VersionedAssetOperations):
    kind = "data"
    title = "Data asset"
    name_rule = names.DATA

    def create_or_update(self, data: Data) -> Data:
        """Register ``data``; a local path is copied in, so later edits of the source never change this version."""
        self._check_name(data.name)  # before the path is copied in
        data_type = check_type(self.title, str(data.type), DATA_TYPES)
        path = self._stored_path(str(data.path or ""), data_type, data.name)
        record = {
            "path": path,
            "type": data_type,
            "description": data.description,
            "tags": dict(data.tags or {}),
            "properties": dict(data.properties or {}),
        }
        return self._to_entity(self._register(data.name, data.version, record))

    def _stored_path(self, path: str, data_type: str, name: str | None) -> str:
        if not path:
            raise LocalMLValidationError(f"Data asset '{name}' has no path.")
        if parse_azureml_uri(path) is None:
            local = self._workspace.resolve_uri(path)
            check_local_data(local, data_type, f"Data asset '{name}'")
            return self._workspace.upload(local)
        check_local_data(self._workspace.resolve_uri(path), data_type, f"Data asset '{name}'")
        return path

    def _to_entity(self, record: dict) -> Data:
        # the ARM id Azure gives a version, which samples pass as an input's path (Input(path=data.id))
        arm_id = (f"/subscriptions/local/resourceGroups/local/providers/Microsoft.MachineLearningServices/workspaces/"
                  f"{self._workspace.name}/data/{record['name']}/versions/{record['version']}")
        return Data(**file_asset_fields(record), id=arm_id)

    def local_path(self, reference: str) -> Path:
        """The local file or folder behind a data reference (``azureml:name:version``, a URI or a path)."""
        if reference.startswith("azureml:") and not reference.startswith("azureml://"):
            reference = self.resolve_reference(reference)["path"]
        return self._workspace.resolve_uri(reference)

    def to_dataframe(self, reference: str):
        """Read a data asset (or any mltable / csv / parquet path) as a pandas DataFrame."""
        import pandas as pd

        path = self.local_path(reference)
        if (path / "MLTable").is_file() or path.name == "MLTable":
            return load_mltable(path, resolve_uri=self._workspace.resolve_uri)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".txt"):
            return pd.read_csv(path)
        if path.suffix in (".json", ".jsonl"):
            return pd.read_json(path, lines=path.suffix == ".jsonl")
        raise LocalMLValidationError(
            f"Cannot read '{reference}' as a table: expected a folder with an MLTable file, or a .csv, .parquet or .jsonl file."
        )


def check_local_data(path: Path, data_type: str, what: str) -> None:
    """The checks Azure makes when a local path is registered or given as a job input (of a data or model type)."""
    if not path.exists():
        raise LocalMLValidationError(f"{what}: path '{path}' does not exist.")
    if data_type == "uri_file" and not path.is_file():
        raise LocalMLValidationError(f"{what}: type uri_file needs a file, but '{path}' is a folder. Use uri_folder or mltable.")
    if data_type in ("uri_folder", "mltable") and not path.is_dir():
        raise LocalMLValidationError(f"{what}: type {data_type} needs a folder, but '{path}' is a file. Use uri_file.")
    if data_type == "mlflow_model" and not path.is_dir():
        raise LocalMLValidationError(f"{what}: type mlflow_model needs the model's folder, but '{path}' is a file. Use custom_model.")
    if data_type == "mltable":
        try:
            read_mltable_spec(path)
        except MLTableError as error:
            raise LocalMLValidationError(f"{what}: {error}") from None
