"""One place that turns a workspace reference into a client.

A reference is a plain string, so it can be a flow parameter and part of a cache key:

- ``"local"``: localml at ``$LOCALML_ROOT`` (default ``./.localml``); ``"local:<folder>"`` names the folder.
- ``"azure"``: the Azure ML workspace named by ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP`` and
  ``AZUREML_WORKSPACE_NAME``, or else by a ``config.json`` (as ``MLClient.from_config`` finds it).
- any other name: a saved ``AzureMLWorkspace`` Prefect block of that name.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from localml import LocalMLClient
from localml.client import DEFAULT_ROOT, ROOT_ENV_VAR

AZURE_ENV_VARS = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")


class AzureMLWorkspace(Block):
    """Credentials and coordinates of an Azure ML workspace.

    Example:
        ```python
        from tasks.workspace import AzureMLWorkspace

        AzureMLWorkspace(
            subscription_id="...", resource_group="rg-ml", workspace_name="mlw-dp100"
        ).save("dp100")
        # then run any flow with workspace="dp100"
        ```
    Without a client secret, ``DefaultAzureCredential`` is used (Azure CLI login, managed identity, ...).
    """

    _block_type_name = "Azure ML Workspace"
    subscription_id: str = Field(description="Azure subscription id")
    resource_group: str = Field(description="Resource group of the workspace")
    workspace_name: str = Field(description="Azure ML workspace name")
    tenant_id: str | None = Field(default=None, description="Service principal tenant (optional)")
    client_id: str | None = Field(default=None, description="Service principal client id (optional)")
    client_secret: SecretStr | None = Field(default=None, description="Service principal secret (optional)")

    def get_client(self) -> Any:
        from azure.ai.ml import MLClient
        from azure.identity import ClientSecretCredential, DefaultAzureCredential

        if self.client_secret is not None:
            credential = ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret.get_secret_value())
        else:
            credential = DefaultAzureCredential()
        return MLClient(credential, self.subscription_id, self.resource_group, self.workspace_name)


def get_client(workspace: str = "local") -> Any:
    """The ``MLClient`` (or ``LocalMLClient``) a workspace reference names."""
    if workspace == "local":
        return _local_client(str(Path(os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT).resolve()))
    if workspace.startswith("local:"):
        return _local_client(str(Path(workspace[len("local:"):]).resolve()))
    return _azure_client(workspace)


def workspace_identity(workspace: str) -> str:
    """What makes two references the same workspace: part of every cache key."""
    client = get_client(workspace)
    if isinstance(client, LocalMLClient):
        return f"localml:{client.workspace_id}"
    return f"azureml:{client.subscription_id}/{client.resource_group_name}/{client.workspace_name}"


def tracking_client(workspace: str) -> Any:
    """An ``MlflowClient`` on the workspace's MLflow tracking store (jobs' runs are named after the jobs)."""
    from mlflow.tracking import MlflowClient

    client = get_client(workspace)
    return MlflowClient(tracking_uri=client.workspaces.get(client.workspace_name).mlflow_tracking_uri)


def download_run_artifact(workspace: str, run_id: str, path: str, destination: str | Path) -> Path:
    """Download ``path`` (a file or folder) that run ``run_id`` logged, under ``destination``; the local path.

    Raises ValueError naming the run and the path when the run has no such artifact.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=str(destination), tracking_uri=tracking_client(workspace).tracking_uri
        ))
    except (MlflowException, OSError) as error:
        raise ValueError(f"Run {run_id} has no {path} ({error}).") from None


def azure_metrics_client(client: Any) -> Any:
    """A ``MetricsQueryClient`` for the Azure Monitor metrics of the workspace's resources (an Azure ``MLClient``).

    It signs in with the credential the ``MLClient`` was made with, and speaks to the Resource Manager of the
    client's cloud (sovereign clouds included). ``MLClient`` keeps both only as private attributes: this is the one
    place that reads them.
    """
    from azure.monitor.query import MetricsQueryClient

    if is_local_client(client):
        raise ValueError("localml keeps no Azure Monitor metrics: a local endpoint's router counts its figures.")
    return MetricsQueryClient(client._credential, endpoint=client._base_url)


def is_local(workspace: str) -> bool:
    return is_local_client(get_client(workspace))


def is_local_client(client: Any) -> bool:
    """A localml client, whose extensions (``data.to_dataframe``, ...) Azure's ``MLClient`` lacks."""
    return isinstance(client, LocalMLClient)


@lru_cache(maxsize=16)
def _local_client(root: str) -> LocalMLClient:
    return LocalMLClient(root)


@lru_cache(maxsize=16)
def _azure_client(workspace: str) -> Any:
    if workspace == "azure":
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential

        if all(os.environ.get(name) for name in AZURE_ENV_VARS):
            return MLClient(DefaultAzureCredential(), *(os.environ[name] for name in AZURE_ENV_VARS))
        try:
            return MLClient.from_config(DefaultAzureCredential())
        except Exception as error:
            raise ValueError(
                "Workspace 'azure' needs AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and AZUREML_WORKSPACE_NAME, "
                f"or a config.json from the Azure portal ({error})."
            ) from error
    try:
        block = AzureMLWorkspace.load(workspace)
    except ValueError as error:
        raise ValueError(
            f"Unknown workspace '{workspace}': use 'local', 'local:<folder>', 'azure', or the name of a saved "
            "AzureMLWorkspace block (AzureMLWorkspace(...).save(name))."
        ) from error
    return block.get_client()
