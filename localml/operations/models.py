"""``ml_client.models``: model versions registered from local folders, job outputs or MLflow runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from azure.ai.ml.entities import Model

from localml.errors import LocalMLValidationError
from localml.operations._assets import VersionedAssetOperations, check_type, file_asset_fields
from localml.references import JobArtifactPath, JobOutputPath, parse_azureml_uri

MODEL_TYPES = ("mlflow_model", "custom_model")


class ModelOperations(VersionedAssetOperations):
    kind = "model"
    title = "Model"

    def create_or_update(self, model: Model) -> Model:
        """Register ``model``; its files are copied in, so the version keeps them even if the source goes away.

        ``path`` may be a local file or folder, ``azureml://jobs/<job>/outputs/artifacts/paths/<dir>``,
        ``azureml://jobs/<job>/outputs/<output>`` or ``runs:/<run_id>/<path>``.
        """
        model_type = check_type(self.title, str(model.type or "custom_model"), MODEL_TYPES)
        source = str(model.path or "")
        if not source:
            raise LocalMLValidationError(f"Model '{model.name}' has no path.")
        local = self._workspace.resolve_uri(source)
        if not local.exists():
            raise LocalMLValidationError(f"Model '{model.name}': path '{source}' does not exist.")
        if model_type == "mlflow_model" and not (local / "MLmodel").is_file():
            raise LocalMLValidationError(
                f"Model '{model.name}': type mlflow_model needs a folder with an MLmodel file, and '{source}' has none. "
                "Point at the folder mlflow.<flavor>.save_model/log_model wrote, or use type custom_model."
            )
        record = {
            "path": self._workspace.upload(local),
            "type": model_type,
            "job_name": _source_job(source) or getattr(model, "job_name", None),
            "description": model.description,
            "tags": dict(model.tags or {}),
            "properties": dict(model.properties or {}),
            "stage": model.stage,
        }
        return self._to_entity(self._register(model.name, model.version, record))

    def download(self, name: str, version: str, download_path: str | Path = ".") -> None:
        """Copy the version's files to ``<download_path>/<name>/`` (a folder model keeps its folder's name), as Azure does."""
        stored = self._workspace.resolve_uri(self._get_record(name, str(version))["path"])
        target = Path(download_path) / name
        if stored.is_dir():
            shutil.copytree(stored, target / stored.name, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stored, target / stored.name)

    def _to_entity(self, record: dict) -> Model:
        model = Model(**file_asset_fields(record), stage=record.get("stage"))
        model.job_name = record.get("job_name")
        return model


def _source_job(source: str) -> str | None:
    parsed = parse_azureml_uri(source)
    if isinstance(parsed, (JobArtifactPath, JobOutputPath)):
        return parsed.job
    if source.startswith("runs:/"):
        return source[len("runs:/"):].split("/")[0]
    return None
