"""LocalMLClient: the azure-ai-ml ``MLClient`` surface, served from a folder on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from azure.ai.ml.entities import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    Component,
    Data,
    Datastore,
    Environment,
    Job,
    Model,
    OnlineDeployment,
    OnlineEndpoint,
)

from localml.errors import UnsupportedFeatureError
from localml.faults import FaultInjector
from localml.operations.batch_deployments import BatchDeploymentOperations
from localml.operations.batch_endpoints import BatchEndpointOperations
from localml.operations.components import ComponentOperations
from localml.operations.compute import ComputeOperations
from localml.operations.data import DataOperations
from localml.operations.datastores import DatastoreOperations
from localml.operations.environments import EnvironmentOperations
from localml.operations.jobs import JobOperations
from localml.operations.models import ModelOperations
from localml.operations.online_deployments import OnlineDeploymentOperations
from localml.operations.online_endpoints import OnlineEndpointOperations
from localml.operations.workspaces import WorkspaceOperations
from localml.pollers import DonePoller
from localml.serving.supervisor import Supervisor
from localml.workspace import LocalWorkspace

ROOT_ENV_VAR = "LOCALML_ROOT"
#: MLClient operation groups localml does not serve yet: using one says so instead of an AttributeError.
NOT_YET_SERVED = frozenset({
    "schedules", "registries", "feature_stores", "feature_sets", "connections", "serverless_endpoints",
    "marketplace_subscriptions", "indexes", "evaluators", "capability_hosts",
})
#: What a workspace serves and a registry does not.
WORKSPACE_ONLY = frozenset({
    "workspaces", "datastores", "data", "models", "environments", "compute", "jobs", "online_endpoints", "online_deployments",
    "batch_endpoints", "batch_deployments",
})
DEFAULT_ROOT = ".localml"


class LocalMLClient:
    """A workspace on this machine that takes the same entities as ``azure.ai.ml.MLClient``.

    >>> ml_client = LocalMLClient()                       # ./.localml, or $LOCALML_ROOT
    >>> job = ml_client.jobs.create_or_update(command(...))
    >>> ml_client.jobs.stream(job.name)

    With ``registry_name`` it stands for that registry (under the same root) and serves its components only.
    """

    def __init__(self, root: str | os.PathLike | None = None, workspace_name: str = "localml", registry_name: str | None = None):
        self.registry_name = registry_name
        self._workspace = LocalWorkspace(Path(root or os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT), workspace_name)
        self.workspace_name = workspace_name
        self.subscription_id = "local"
        self.resource_group_name = "local"
        # the groups reached from outside meet injected faults (localml.faults); they use one another directly
        faults = FaultInjector(self._workspace.catalog)
        components = ComponentOperations(self._workspace, registry_name)
        self.components = faults.wrap("components", components)
        if registry_name:
            return
        data, models = DataOperations(self._workspace), ModelOperations(self._workspace)
        environments, compute = EnvironmentOperations(self._workspace), ComputeOperations(self._workspace)
        self.workspaces = faults.wrap("workspaces", WorkspaceOperations(self._workspace))
        self.datastores = faults.wrap("datastores", DatastoreOperations(self._workspace))
        self.data = faults.wrap("data", data)
        self.models = faults.wrap("models", models)
        self.environments = faults.wrap("environments", environments)
        self.compute = faults.wrap("compute", compute)
        jobs = JobOperations(self._workspace, data, models, environments, compute, components)
        self.jobs = faults.wrap("jobs", jobs)
        batch_deployments = BatchDeploymentOperations(self._workspace, models, environments, compute)
        self.batch_deployments = faults.wrap("batch_deployments", batch_deployments)
        self.batch_endpoints = faults.wrap("batch_endpoints", BatchEndpointOperations(self._workspace, batch_deployments, jobs))
        supervisor = Supervisor(self._workspace)
        endpoints = OnlineEndpointOperations(self._workspace, supervisor)
        self.online_endpoints = faults.wrap("online_endpoints", endpoints)
        self.online_deployments = faults.wrap(
            "online_deployments", OnlineDeploymentOperations(self._workspace, supervisor, endpoints, models, environments)
        )

    @property
    def root(self) -> Path:
        return self._workspace.root

    @property
    def workspace_id(self) -> str:
        """Unique per workspace folder, so a cache entry never outlives the workspace it points into."""
        return self._workspace.catalog.workspace_id

    @property
    def mlflow_tracking_uri(self) -> str:
        return self._workspace.tracking.uri

    def create_or_update(self, entity: Any, **kwargs) -> Any:
        """Dispatch on the entity's type, as ``MLClient.create_or_update`` does."""
        if isinstance(entity, Component):
            return self.components.create_or_update(entity, **kwargs)
        if isinstance(entity, Job) or hasattr(entity, "_to_job"):
            return self.jobs.create_or_update(entity, **kwargs)
        for kind, operations in ((Data, self.data), (Model, self.models), (Environment, self.environments), (Datastore, self.datastores)):
            if isinstance(entity, kind):
                return operations.create_or_update(entity)
        raise UnsupportedFeatureError(f"create_or_update of {type(entity).__name__}")

    def begin_create_or_update(self, entity: Any, **kwargs) -> DonePoller:
        """Dispatch on the entity's type, as ``MLClient.begin_create_or_update`` does."""
        if isinstance(entity, AmlCompute):
            return self.compute.begin_create_or_update(entity)
        if isinstance(entity, OnlineEndpoint):
            return self.online_endpoints.begin_create_or_update(entity, **kwargs)
        if isinstance(entity, OnlineDeployment):
            return self.online_deployments.begin_create_or_update(entity, **kwargs)
        if isinstance(entity, BatchEndpoint):
            return self.batch_endpoints.begin_create_or_update(entity, **kwargs)
        if isinstance(entity, BatchDeployment):
            return self.batch_deployments.begin_create_or_update(entity, **kwargs)
        raise UnsupportedFeatureError(f"begin_create_or_update of {type(entity).__name__}")

    def __getattr__(self, name: str) -> Any:
        if name in WORKSPACE_ONLY and self.registry_name:
            raise UnsupportedFeatureError(
                f"ml_client.{name} on a registry client (registry_name='{self.registry_name}')",
                "A registry serves components; make a LocalMLClient without registry_name for the workspace's jobs and assets.",
            )
        if name in NOT_YET_SERVED:
            raise UnsupportedFeatureError(f"ml_client.{name} yet", "It is on the roadmap; see the README.")
        raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")

    def __repr__(self) -> str:
        scope = f"registry_name='{self.registry_name}'" if self.registry_name else f"workspace_name='{self.workspace_name}'"
        return f"LocalMLClient(root='{self.root}', {scope})"
