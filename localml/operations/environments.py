"""``ml_client.environments``: curated names run on the current interpreter; custom ones are recorded."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from azure.ai.ml.entities import Environment

from localml.errors import UnsupportedFeatureError
from localml.operations._assets import VersionedAssetOperations
from localml.references import parse_asset_reference

CURATED_PREFIX = "azureml-"


def is_curated(name: str) -> bool:
    return name.lower().startswith(CURATED_PREFIX)


class EnvironmentOperations(VersionedAssetOperations):
    kind = "environment"
    title = "Environment"

    def create_or_update(self, environment: Environment) -> Environment:
        conda = environment.conda_file
        if isinstance(conda, (str, Path)):
            conda = yaml.safe_load(Path(conda).read_text())
        record = {
            "image": environment.image,
            "conda_file": conda,
            "description": environment.description,
            "tags": dict(environment.tags or {}),
        }
        return self._to_entity(self._register(environment.name, environment.version, record))

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Environment:
        if is_curated(name):
            return Environment(name=name, version=version or "latest", description="Curated: runs on the current interpreter.")
        return super().get(name, version, label)

    def _to_entity(self, record: dict) -> Environment:
        return Environment(
            name=record["name"],
            version=record["version"],
            image=record.get("image"),
            conda_file=record.get("conda_file"),
            description=record.get("description"),
            tags=record.get("tags") or {},
        )

    def interpreter_for(self, reference: str | None) -> tuple[str, list[str]]:
        """The Python interpreter a job with this environment runs on, and warnings to put in its log."""
        parsed = parse_asset_reference(reference or "", require_prefix=False)
        if not reference or is_curated(parsed.name if parsed else reference):
            return sys.executable, []
        record = self.resolve_reference(reference)
        if record.get("conda_file"):
            raise UnsupportedFeatureError(
                f"building environment '{reference}' from its conda specification yet",
                "Use a curated environment name such as 'AzureML-sklearn-1.5@latest' (it runs on the current interpreter).",
            )
        return sys.executable, [
            f"Environment '{reference}' is an image-only environment ({record.get('image')}); localml assumes no "
            "container engine, so the job runs on the current interpreter."
        ]
