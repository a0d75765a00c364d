"""``ml_client.components``: command components as versioned assets, their code snapshotted at registration.

A client made with ``registry_name`` keeps its components apart from the workspace's, under the
registry's name, and names them as Azure names registry assets (``azureml://registries/...``).
The ``azureml`` registry serves the built-in Responsible AI components (``localml/rai/components``),
registered there the first time the registry is read.
"""

from __future__ import annotations

import re
from pathlib import Path

from azure.ai.ml.entities import CommandComponent, Component

from amlkit import names
from localml.errors import LocalMLValidationError, UnsupportedFeatureError
from localml.execution.command import upload_code
from localml.operations._assets import VersionedAssetOperations
from localml.workspace import LocalWorkspace

#: The name the SDK gives a component nobody named (a ``command()`` builder's, for example).
ANONYMOUS = "azureml_anonymous"
#: Azure's registry of built-in components, and the specs localml serves from it.
BUILTIN_REGISTRY = "azureml"
BUILTIN_COMPONENTS = Path(__file__).resolve().parents[1] / "rai" / "components"
REGISTRY_COMPONENT = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/components/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+)|/labels/(?P<label>[^/]+))?$"
)


class ComponentOperations(VersionedAssetOperations):
    title = "Component"
    name_rule = names.COMPONENT

    def __init__(self, workspace: LocalWorkspace, registry_name: str | None = None):
        super().__init__(workspace)
        self._registry_name = registry_name
        self.kind = "component" if registry_name is None else f"registry/{registry_name}/component"

    def create_or_update(self, component: Component, version: str | None = None, **kwargs) -> Component:
        """Register ``component``; its code folder is copied in, so later edits never change this version."""
        if not isinstance(component, CommandComponent):
            raise UnsupportedFeatureError(
                f"{type(component).__name__} components yet",
                "Command components (load_component of a command YAML, or command(...).component) are registered today.",
            )
        spec = component._to_dict()
        name = spec.pop("name", None)
        if not name or name == ANONYMOUS:
            raise LocalMLValidationError("A component needs a name to be registered: set name in its YAML or pass name= to command().")
        self._check_name(name)  # before its code is copied in
        result = component._validate()  # the SDK's own checks, as Azure's create_or_update makes them
        if not result.passed:
            problems = "; ".join(f"{field}: {message}" for field, message in result.error_messages.items())
            raise LocalMLValidationError(f"Component '{name}' is invalid: {problems}")
        spec.pop("id", None)
        spec_version = spec.pop("version", None)
        if spec.get("code"):
            spec["code"] = upload_code(self._workspace, spec["code"])
        return self._to_entity(self._register(name, version or spec_version, {"spec": spec}))

    def get(self, name: str, version: str | int | None = None, label: str | None = None) -> Component:
        """Version ``version``, or the one ``label`` names; the latest when neither is given (as Azure does for components)."""
        self._register_builtins()
        return super().get(name, version, "latest" if version is None and label is None else label)

    def list(self, name: str | None = None):
        self._register_builtins()
        return super().list(name=name)

    def _register_builtins(self) -> None:
        """The built-in components of the ``azureml`` registry, registered once (a version never changes)."""
        if self._registry_name != BUILTIN_REGISTRY:
            return
        from azure.ai.ml import load_component

        for spec in sorted(BUILTIN_COMPONENTS.glob("*.yml")):
            component = load_component(source=str(spec))
            if self._catalog.get_asset(self.kind, component.name, str(component.version)) is None:
                self.create_or_update(component)

    def entity(self, reference: str) -> Component:
        """The component ``azureml:name:version`` or ``azureml:name@latest`` names, or a registry's
        ``azureml://registries/<registry>/components/<name>/versions/<version>`` (or ``/labels/latest``)."""
        registry = REGISTRY_COMPONENT.match(reference)
        if registry:
            operations = ComponentOperations(self._workspace, registry["registry"])
            return operations.get(registry["name"], version=registry["version"], label=registry["label"])
        return self._to_entity(self.resolve_reference(reference))

    def _to_entity(self, record: dict) -> Component:
        component = Component._load(data={**record["spec"], "name": record["name"], "version": record["version"]})
        component._id = self._asset_id(record["name"], record["version"])
        return component

    def _asset_id(self, name: str, version: str) -> str:
        if self._registry_name:
            return f"azureml://registries/{self._registry_name}/components/{name}/versions/{version}"
        return (
            f"/subscriptions/local/resourceGroups/local/providers/Microsoft.MachineLearningServices/"
            f"workspaces/{self._workspace.name}/components/{name}/versions/{version}"
        )
