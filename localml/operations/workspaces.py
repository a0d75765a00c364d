"""``ml_client.workspaces`` and ``ml_client.datastores``: where user code finds the MLflow store and the files."""

from __future__ import annotations

from typing import Iterator

from azure.ai.ml.entities import AzureBlobDatastore, Workspace

from localml.errors import not_found
from localml.workspace import DEFAULT_DATASTORE, LocalWorkspace


class WorkspaceOperations:
    def __init__(self, workspace: LocalWorkspace):
        self._workspace = workspace

    def get(self, name: str | None = None, **kwargs) -> Workspace:
        if name not in (None, self._workspace.name):
            raise not_found("Workspace", name, known=[self._workspace.name])
        workspace = Workspace(name=self._workspace.name, description=f"localml workspace at {self._workspace.root}")
        workspace._mlflow_tracking_uri = self._workspace.tracking.uri
        return workspace

    def list(self, **kwargs) -> Iterator[Workspace]:
        return iter([self.get()])


class DatastoreOperations:
    """One datastore, ``workspaceblobstore``: a folder under the workspace root."""

    def __init__(self, workspace: LocalWorkspace):
        self._workspace = workspace

    def get(self, name: str, **kwargs) -> AzureBlobDatastore:
        if name != DEFAULT_DATASTORE:
            raise not_found("Datastore", name, known=[DEFAULT_DATASTORE])
        return self.get_default()

    def get_default(self, **kwargs) -> AzureBlobDatastore:
        folder = self._workspace.datastore_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return AzureBlobDatastore(
            name=DEFAULT_DATASTORE,
            account_name="localml",
            container_name=DEFAULT_DATASTORE,
            description=f"Local folder {folder}",
        )

    def list(self, **kwargs) -> Iterator[AzureBlobDatastore]:
        return iter([self.get_default()])
