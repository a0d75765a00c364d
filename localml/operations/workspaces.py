"""``ml_client.workspaces``: where user code finds the MLflow store."""

from __future__ import annotations

from typing import Iterator

from azure.ai.ml.entities import Workspace

from localml.errors import not_found
from localml.workspace import LocalWorkspace


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
