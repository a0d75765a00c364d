"""``ml_client.models``: model versions registered from local folders, job outputs or MLflow runs.

The workspace's MLflow model registry holds the same versions (see ``localml.registry``): a version
registered here is there too, and one registered with ``mlflow.register_model`` is imported here.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from azure.ai.ml.entities import Model
from azure.core.exceptions import ResourceNotFoundError

from amlkit import names
from amlkit.references import JobArtifactPath, JobOutputPath, logged_model_id, parse_azureml_uri, parse_run_artifact
from localml.errors import LocalMLValidationError
from localml.operations._assets import (
    VersionedAssetOperations,
    check_type,
    file_asset_fields,
)
from localml.registry import (
    ModelRegistry,
    RegistryVersion,
    catalog_stage,
    mlflow_stage,
    registry_number,
)
from localml.tracking import JOB_TAG
from localml.workspace import contained

MODEL_TYPES = ("mlflow_model", "custom_model")
#: How often a registration takes the next number again after MLflow handed that number out meanwhile.
NUMBERING_ATTEMPTS = 5

logger = logging.getLogger(__name__)


class _NumberTaken(Exception):
    """MLflow's registry gave the number to another registration between our look and our claim."""


class ModelOperations(VersionedAssetOperations):
    kind = "model"
    title = "Model"
    name_rule = names.MODEL

    def __init__(self, workspace):
        super().__init__(workspace)
        self._registry = ModelRegistry(workspace.tracking)
        self._unimportable: set[tuple[str, str]] = set()

    def create_or_update(self, model: Model) -> Model:
        """Register ``model``; its files are copied in, so the version keeps them even if the source goes away.

        ``path`` may be a local file or folder, ``azureml://jobs/<job>/outputs/artifacts/paths/<dir>``,
        ``azureml://jobs/<job>/outputs/<output>``, ``runs:/<run_id>/<path>`` or ``models:/<model_id>``; a job's or
        run's ``<path>`` may name a model it logged the MLflow 3 way (``log_model(model, name=...)``).
        """
        self._check_name(model.name)  # before the files are copied in
        model_type = check_type(self.title, str(model.type or "custom_model"), MODEL_TYPES)
        source = _written_path(model)
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
            "path": self._workspace.upload(local, name=self._folder_name(source, local)),
            "type": model_type,
            "job_name": self._source_run(source) or getattr(model, "job_name", None),
            "description": model.description,
            "tags": dict(model.tags or {}),
            "properties": dict(model.properties or {}),
            "stage": model.stage,
        }
        for _ in range(NUMBERING_ATTEMPTS):
            self._refresh(model.name)
            try:
                return self._to_entity(self._register(model.name, model.version, record))
            except _NumberTaken:
                continue  # the refresh brings in the version that took the number, and the next number is free
        raise RuntimeError(
            f"Model '{model.name}': MLflow's registry handed out the next version number {NUMBERING_ATTEMPTS} times "
            "while this registration took it; try again."
        )

    def download(self, name: str, version: str, download_path: str | Path = ".") -> None:
        """Copy the version's files to ``<download_path>/<name>/`` (a folder model keeps its folder's name), as Azure does."""
        stored = self._workspace.resolve_uri(self._get_record(name, str(version))["path"])
        # a name from before names were checked, or imported from MLflow's registry, must not climb out either
        target = contained(download_path, name, f"Model '{name}' downloaded to")
        if stored.is_dir():
            shutil.copytree(stored, target / stored.name, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stored, target / stored.name)

    # -- the MLflow registry ---------------------------------------------------------------
    def _refresh(self, name: str | None) -> None:
        """Import the versions registered through MLflow; mirror the catalog's that MLflow lacks.

        When nothing is new this is two small SQLite reads and no MLflow import. The catalog is read first:
        a registration claims its number in MLflow before it stores the version here, so reading in this order
        never mistakes one in flight for a version MLflow lacks.
        """
        stored = {(r["name"], r["version"]): r for r in self._catalog.list_assets(self.kind, name, include_archived=True)}
        held = self._registry.numbers(name)
        for key, ready in held.items():
            if ready and key not in stored and key not in self._unimportable:
                self._import(*key)
        for key, record in stored.items():
            if key not in held and registry_number(key[1]) is not None:
                self._registry.claim(self._registry_version(record, record["archived"]))

    def _adding(self, name: str, version: str, record: dict) -> None:
        if registry_number(version) is None:
            return
        if not self._registry.claim(self._registry_version({**record, "name": name, "version": version}, archived=False)):
            raise _NumberTaken(f"{name}:{version}")

    def _changed(self, record: dict) -> None:
        if registry_number(record["version"]) is not None:
            self._registry.update(self._registry_version(record, record["archived"]))

    def _registry_version(self, record: dict, archived: bool) -> RegistryVersion:
        return RegistryVersion(
            name=record["name"],
            number=int(record["version"]),
            source=self._workspace.resolve_uri(record["path"]).as_uri(),
            run_id=record.get("job_name"),
            description=record.get("description"),
            tags={str(k): str(v) for k, v in (record.get("tags") or {}).items()},
            stage=mlflow_stage(record.get("stage"), archived),
        )

    def _import(self, name: str, version: str) -> None:
        """Store a version registered through MLflow, its files copied in as a registration copies them."""
        from mlflow.exceptions import MlflowException

        try:
            self._check_name(name)  # mlflow.register_model allows names Azure refuses
            found, files_uri = self._registry.read(name, version)
            with tempfile.TemporaryDirectory() as scratch:
                files = self._files(files_uri, Path(scratch))
                stored_path = self._workspace.upload(files)
                model_type = "mlflow_model" if (files / "MLmodel").is_file() else "custom_model"
        except (MlflowException, OSError, LocalMLValidationError, ResourceNotFoundError) as error:
            # skipped, not raised: one broken version in MLflow must not break every read of the catalog
            logger.warning("Model %s:%s in the MLflow registry cannot be imported: %s", name, version, error)
            self._unimportable.add((name, version))
            return
        stage, archived = catalog_stage(found.current_stage)
        record = {
            "path": stored_path,
            "type": model_type,
            "job_name": found.run_id or None,
            "description": found.description or None,
            "tags": dict(found.tags),
            "properties": {},
            "stage": stage,
        }
        with self._catalog.transaction() as db:
            if self._catalog.get_asset(self.kind, name, version, db=db) is None:  # another process may have been first
                self._catalog.insert_asset(db, self.kind, name, version, record, archived=archived)

    def _files(self, uri: str, scratch: Path) -> Path:
        """The local folder (or file) behind an MLflow model version's files."""
        import mlflow.artifacts
        from mlflow.utils.file_utils import local_file_uri_to_path
        from mlflow.utils.uri import is_local_uri

        if uri.startswith("runs:/"):
            return self._workspace.resolve_uri(uri)
        if is_local_uri(uri):
            return Path(local_file_uri_to_path(uri)).resolve()
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(scratch), tracking_uri=self._workspace.tracking.uri))

    def _folder_name(self, source: str, local: Path) -> str:
        """The name the version's copy takes: a logged model's files sit in a folder MLflow names 'artifacts', and
        take the model's name instead, as the folder ``.../paths/model`` of a job registers as ``model`` on Azure."""
        if source.startswith("models:/"):
            return self._workspace.tracking.logged_model(logged_model_id(source)).name
        artifact = parse_run_artifact(source)
        return Path(artifact.path).name if artifact and artifact.path else local.name

    def _source_run(self, source: str) -> str | None:
        """The job (or MLflow run) whose output ``source`` is, if it is one."""
        parsed = parse_run_artifact(source) or parse_azureml_uri(source)
        if isinstance(parsed, (JobArtifactPath, JobOutputPath)):
            return parsed.job
        if source.startswith("models:/"):
            logged = self._workspace.tracking.logged_model(logged_model_id(source))
            return logged.source_run_id or logged.tags.get(JOB_TAG)
        return None

    def _to_entity(self, record: dict) -> Model:
        model = Model(**file_asset_fields(record), stage=record.get("stage"))
        model.job_name = record.get("job_name")
        return model


def _written_path(model: Model) -> str:
    """The model's path as its author wrote it. The SDK keeps ``runs:/`` URIs and URLs, and makes any other path
    absolute against the working folder, ``models:/<model_id>`` too: that arrives as ``<cwd>/models:/<model_id>``."""
    path = str(model.path or "")
    _, marker, model_id = path.partition("/models:/")
    if marker and not Path(path).exists():
        return f"models:/{model_id}"
    return path
