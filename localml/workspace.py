"""The state behind a LocalMLClient: a root folder with its catalog, MLflow store, datastores and job folders."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from amlkit.hashing import content_hash, copy_ignore
from amlkit.references import (
    DatastorePath,
    JobOutputPath,
    logged_model_id,
    parse_azureml_uri,
    parse_run_artifact,
)
from localml.store import Catalog
from localml.tracking import Tracking


def _errors():
    # imported when raised: they load the whole azure.ai.ml SDK, and the job runner (a process per job)
    # uses this module without raising them
    from localml import errors

    return errors

DEFAULT_DATASTORE = "workspaceblobstore"


def contained(base: str | Path, relative: str | Path, what: str) -> Path:
    """``base / relative``, if it stays inside ``base``; else an error saying ``what`` leads out of it.

    Every path localml derives from a name or a URI (datastore paths, job outputs, run artifacts, job folders) and
    every download target goes through here, so no name or URI reads or writes outside its folder. The check is
    lexical ('..' and absolute paths), not through symbolic links: what it guards is text a caller gave, and a link
    a user made inside a folder of theirs is theirs to follow.
    """
    base = Path(os.path.normpath(Path(base).absolute()))
    target = Path(os.path.normpath(base / relative))
    if target != base and base not in target.parents:
        raise _errors().LocalMLValidationError(
            f"{what} '{relative}' leads outside {base}. Give a path inside it: relative, with no '..' that climbs above it."
        )
    return target


class LocalWorkspace:
    def __init__(self, root: str | Path, name: str):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.catalog = Catalog(self.root / "catalog.db")
        self.tracking = Tracking(self.root)

    def datastore_dir(self, datastore: str = DEFAULT_DATASTORE) -> Path:
        """The folder serving a datastore: ``workspaceblobstore`` or one registered (names are case-insensitive)."""
        key = datastore.lower()
        if key != DEFAULT_DATASTORE and self.catalog.get_resource("datastore", key) is None:
            raise _errors().not_found("Datastore", datastore, known=self.datastore_names())
        return contained(self.root / "datastores", key, "Datastore")

    def datastore_names(self) -> list[str]:
        return [DEFAULT_DATASTORE, *(record["name"] for record in self.catalog.list_resources("datastore"))]

    def job_dir(self, job_name: str) -> Path:
        return contained(self.root / "jobs", job_name, "Job name")

    def upload(self, local_path: str | Path, name: str | None = None) -> str:
        """Copy a local file or folder into the default datastore once per content, as Azure's LocalUpload does.

        The copy keeps the source's name, or takes ``name``.
        """
        source = Path(local_path).expanduser().resolve()
        if not source.exists():
            raise _errors().LocalMLValidationError(f"Local path '{local_path}' does not exist (resolved to {source}).")
        name = name or source.name
        relative = f"LocalUpload/{content_hash(source, exclude=self.root)[:32]}/{name}"
        target = self.datastore_dir() / relative
        if not target.exists():
            # a staging name of its own: two processes may upload the same content at once (e.g. both importing
            # a version from the MLflow registry), and the first rename wins
            staging = target.parent / f".{name}.{uuid.uuid4().hex}.partial"
            staging.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, staging, ignore=copy_ignore(exclude=self.root))
            else:
                shutil.copy2(source, staging)
            try:
                staging.rename(target)
            except OSError:
                if not target.exists():
                    raise
                shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
        return f"azureml://datastores/{DEFAULT_DATASTORE}/paths/{relative}"

    def resolve_uri(self, uri: str) -> Path:
        """The local path behind a datastore URI, a job output URI, a ``runs:/`` or ``models:/<model_id>`` URI or a local path."""
        parsed = parse_azureml_uri(uri)
        if isinstance(parsed, DatastorePath):
            return contained(self.datastore_dir(parsed.datastore), parsed.path, f"The path of '{uri}'")
        if isinstance(parsed, JobOutputPath):
            return contained(self.job_output_dir(parsed.job, parsed.output), parsed.path, f"The path of '{uri}'")
        if artifact := parse_run_artifact(uri):
            return self.run_artifact_path(artifact.job, artifact.path)
        if uri.startswith("models:/"):
            return self.logged_model_path(logged_model_id(uri))
        if uri.startswith("azureml://"):
            raise _errors().LocalMLValidationError(
                f"'{uri}' is not a URI localml understands. Use azureml://datastores/<name>/paths/<path>, "
                "azureml://jobs/<job>/outputs/artifacts/paths/<path> or azureml://jobs/<job>/outputs/<output>."
            )
        if "://" in uri and not uri.startswith("file://"):
            raise _errors().LocalMLValidationError(f"'{uri}' is a remote URI; localml reads local paths and azureml:// URIs only.")
        return Path(uri.removeprefix("file://")).expanduser().resolve()

    def job_output_dir(self, job_name: str, output_name: str) -> Path:
        job = self.catalog.get_job(job_name)
        if job is None:
            raise _errors().not_found("Job", job_name)
        outputs = job["record"].get("outputs", {})
        if output_name not in outputs:
            raise _errors().not_found(f"Output of job '{job_name}'", output_name, known=sorted(outputs))
        return self.resolve_uri(outputs[output_name])

    def run_artifact_path(self, run_id: str, path: str) -> Path:
        """A run's artifact as a local path, or a model the run logged the MLflow 3 way, by its name.

        MLflow 3's ``log_model(model, name="model")`` keeps the model apart from the run's artifacts, as a logged
        model; Azure users' scripts still register it as ``azureml://jobs/<job>/outputs/artifacts/paths/model``,
        as they did when MLflow 2 wrote it among the artifacts. ``path`` is a path among the run's artifacts, else a
        logged model's name and a path inside it; the artifacts come first, as they did for such scripts.
        """
        artifacts = self.tracking.artifact_dir(run_id)
        if artifacts is None:
            raise _errors().not_found("Job or run", run_id)
        local = contained(artifacts, path, f"Artifact path of run '{run_id}'")
        if local.exists() or not path:
            return local
        name, _, inside = path.partition("/")
        models = self.tracking.run_logged_models(run_id)
        model = next((m for m in models if m.name == name), None)
        if model is None:
            known = sorted({p.name for p in artifacts.iterdir()} if artifacts.is_dir() else set())
            known += sorted({f"model {m.name}" for m in models})  # a name logged twice is one model, the newest
            raise _errors().not_found(f"Artifact or logged model of run '{run_id}'", path, known=known)
        return contained(logged_model_dir(model), inside, f"The path in model '{name}' of run '{run_id}'")

    def logged_model_path(self, model_id: str) -> Path:
        """The files of MLflow 3 logged model ``model_id`` (``models:/<model_id>``)."""
        model = self.tracking.logged_model(model_id)
        if model is None:
            raise _errors().not_found("Logged model", model_id)
        return logged_model_dir(model)


def logged_model_dir(model) -> Path:
    """Where a logged model's files are: the workspace's MLflow store keeps them on this machine."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    return Path(local_file_uri_to_path(model.artifact_location))
