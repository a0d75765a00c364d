"""``ml_client.environments``: curated names run on the current interpreter; a conda spec becomes a venv.

A job's environment is settled when the job is submitted, so a spec localml cannot build fails
in the caller's process with a message saying what to change, not minutes later in the job.
The venv itself is built by the job's runner (``localml.execution.venvs``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from pathlib import Path

import yaml
from azure.ai.ml.entities import Environment
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from amlkit import names
from amlkit.references import parse_asset_reference
from localml.errors import LocalMLValidationError
from localml.operations._assets import VersionedAssetOperations

CURATED_PREFIX = "azureml-"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# a conda match spec localml translates: [channel::]name, optionally an operator and a version
_CONDA_DEPENDENCY = re.compile(
    r"^(?:[\w.\-]+::)?(?P<name>[A-Za-z0-9][A-Za-z0-9._\-]*)\s*(?:(?P<op>==|>=|<=|!=|~=|=|>|<)\s*(?P<version>[A-Za-z0-9.*+!\-_]+))?$"
)
_KNOWN_KEYS = {"name", "channels", "dependencies"}


def is_curated(name: str) -> bool:
    return name.lower().startswith(CURATED_PREFIX)


class EnvironmentOperations(VersionedAssetOperations):
    kind = "environment"
    title = "Environment"
    name_rule = names.ENVIRONMENT

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

    def get(self, name: str, version: str | int | None = None, label: str | None = None) -> Environment:
        if is_curated(name):
            # Azure takes the version as an int too; the entity holds it as text
            version = "latest" if version is None else str(version)
            return Environment(name=name, version=version, description="Curated: runs on the current interpreter.")
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

    def runtime_for(self, reference: str | None) -> tuple[dict, list[str]]:
        """What a job with this environment runs on, as fields of the job's record, and warnings for its log.

        ``{"interpreter": path}``: curated and image-only environments run on the current interpreter.
        ``{"environment_build": plan}``: an environment with a conda spec runs in a venv its runner builds
        from ``plan`` (see ``build_plan``).
        """
        parsed = parse_asset_reference(reference or "", require_prefix=False)
        if not reference or is_curated(parsed.name if parsed else reference):
            return {"interpreter": sys.executable}, []
        record = self.resolve_reference(reference)
        name = f"{record['name']}:{record['version']}"
        if record.get("conda_file") is not None:
            warnings = []
            if record.get("image"):
                warnings.append(
                    f"Environment '{name}' names the image {record['image']}; localml assumes no container engine, "
                    "so it builds the environment's conda specification as a venv and does not use the image."
                )
            return {"environment_build": build_plan(name, record["conda_file"])}, warnings
        return {"interpreter": sys.executable}, [
            f"Environment '{reference}' is an image-only environment ({record.get('image')}); localml assumes no "
            "container engine, so the job runs on the current interpreter."
        ]


def build_plan(name: str, conda: object) -> dict:
    """The venv a conda specification stands for: pip requirements on the current Python, and its hash.

    Conda packages are installed from PyPI under the same name; ``name=1.5`` means 1.5.* as in conda.
    Environments with the same requirements share one venv, whatever their names: the hash covers only
    the requirements and the Python version.
    """
    if not isinstance(conda, dict) or not isinstance(conda.get("dependencies"), list):
        raise LocalMLValidationError(
            f"The conda specification of environment '{name}' must be a mapping with a 'dependencies' list, "
            f"for example {{'dependencies': ['python={PYTHON}', {{'pip': ['scikit-learn']}}]}}; got {_shorten(conda)}."
        )
    requirements, notes = [], []
    for entry in conda["dependencies"]:
        if isinstance(entry, dict) and set(entry) == {"pip"} and isinstance(entry["pip"], list):
            requirements += [_pip_requirement(name, item) for item in entry["pip"]]
        elif isinstance(entry, str):
            requirement = _conda_requirement(name, entry)
            if requirement:
                requirements.append(requirement)
                notes.append(f"conda package '{entry}' is installed from PyPI as '{requirement}'.")
        else:
            raise LocalMLValidationError(
                f"Environment '{name}': conda dependency {_shorten(entry)} is neither a package spec (a string) "
                "nor a {'pip': [...]} list of pip requirements."
            )
    if conda.get("channels"):
        notes.append(f"conda channels are ignored ({', '.join(map(str, conda['channels']))}): packages come from PyPI.")
    if ignored := sorted(set(conda) - _KNOWN_KEYS):
        notes.append(f"conda specification keys ignored: {', '.join(map(str, ignored))}.")
    requirements = sorted(set(requirements))
    canonical = json.dumps({"python": PYTHON, "requirements": requirements})
    return {
        "hash": hashlib.sha256(canonical.encode()).hexdigest(),
        "requirements": requirements,
        "python": PYTHON,
        "name": name,
        "notes": notes,
    }


def _pip_requirement(name: str, item: object) -> str:
    if not isinstance(item, str) or not item.strip():
        raise LocalMLValidationError(
            f"Environment '{name}': pip requirement {_shorten(item)} must be a non-empty string such as 'six==1.16.0'."
        )
    return item.strip()


def _conda_requirement(name: str, entry: str) -> str | None:
    """The pip requirement for a conda dependency; None for what the venv already has (python, pip)."""
    match = _CONDA_DEPENDENCY.match(entry.strip())
    if not match:
        raise LocalMLValidationError(
            f"Environment '{name}': localml cannot translate conda dependency '{entry}' to pip. Write it as "
            "'name', 'name=version', 'name==version' or 'name>=version', or list it under 'pip:'."
        )
    package, op, version = match["name"], match["op"], match["version"]
    if package.lower() == "pip":
        return None
    if package.lower() == "python":
        _check_python(name, entry, op, version)
        return None
    if op == "=":  # conda's "=1.5" is "1.5.*"
        op, version = "==", version if version.endswith("*") else f"{version}.*"
    return f"{package}{op or ''}{version or ''}"


def _check_python(name: str, entry: str, op: str | None, version: str | None) -> None:
    if op is None:
        return
    if op in ("=", "=="):  # the venv is built on this interpreter: only major.minor can be honoured
        fits = version.rstrip(".*").split(".")[:2] == PYTHON.split(".")
    else:
        try:
            fits = SpecifierSet(f"{op}{version}").contains(platform.python_version())
        except InvalidSpecifier:
            fits = False
    if not fits:
        raise LocalMLValidationError(
            f"localml builds environments on the current Python {PYTHON}; environment '{name}' asks for {entry}. "
            f"Register a version of the environment with python={PYTHON} (or no python entry), or run localml on "
            "a matching Python."
        )


def _shorten(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
