"""``ml_client.datastores``: the workspace's ``workspaceblobstore`` and the user's own datastores, each a folder.

On Azure a datastore points at storage elsewhere (a blob container, an ADLS Gen2 filesystem, a file share). Here
each is served by the folder ``<root>/datastores/<name>``, so ``azureml://datastores/<name>/paths/...`` works for
data assets, job inputs and job outputs as it does for ``workspaceblobstore``. As on Azure, deleting a datastore
removes the reference and leaves the data: its folder stays, and a datastore made again under its name finds it.

A datastore's secrets (account key, SAS token, service principal secret) are never stored, so they reach no
catalog, log or artifact: the catalog keeps the datastore as Azure's ``get`` returns it, the credentials of the
same kind with their secret left out (``AccountKeyConfiguration(account_key=None)``, a service principal's tenant
and client ids without its secret).
"""

from __future__ import annotations

from typing import Iterator

from azure.ai.ml._restclient.arm_ml_service.models import Datastore as RestDatastore
from azure.ai.ml.entities import AzureBlobDatastore, AzureDataLakeGen2Datastore, AzureFileDatastore, Datastore

from amlkit import names
from localml.errors import LocalMLValidationError, UnsupportedFeatureError, not_found
from localml.workspace import DEFAULT_DATASTORE, LocalWorkspace

SERVED_TYPES = (AzureBlobDatastore, AzureDataLakeGen2Datastore, AzureFileDatastore)
NO_SECRETS_HINT = "localml never stores a datastore's secrets, so it has none to return; read the files through azureml:// paths."


class DatastoreOperations:
    def __init__(self, workspace: LocalWorkspace):
        self._workspace = workspace
        self._catalog = workspace.catalog

    def create_or_update(self, datastore: Datastore) -> Datastore:
        """Register ``datastore`` (or replace the one of its name), served by a folder of the workspace."""
        if not isinstance(datastore, SERVED_TYPES):
            raise UnsupportedFeatureError(
                f"datastores of type {type(datastore).__name__}",
                "It serves AzureBlobDatastore, AzureDataLakeGen2Datastore and AzureFileDatastore.",
            )
        name = names.DATASTORE.check(datastore.name)
        if name.lower() == DEFAULT_DATASTORE:
            raise LocalMLValidationError(
                f"Datastore '{name}' is the workspace's default datastore and cannot be replaced; choose another name."
            )
        record = _redacted(datastore)
        self._catalog.put_resource("datastore", name.lower(), record)
        self._workspace.datastore_dir(name).mkdir(parents=True, exist_ok=True)
        return _to_entity(record)

    def get(self, name: str, *, include_secrets: bool = False) -> Datastore:
        _refuse_secrets(include_secrets)
        if name.lower() == DEFAULT_DATASTORE:
            return self.get_default()
        record = self._catalog.get_resource("datastore", name.lower())
        if record is None:
            raise not_found("Datastore", name, known=self._workspace.datastore_names())
        return _to_entity(record)

    def get_default(self, *, include_secrets: bool = False) -> AzureBlobDatastore:
        _refuse_secrets(include_secrets)
        folder = self._workspace.datastore_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return AzureBlobDatastore(
            name=DEFAULT_DATASTORE,
            account_name="localml",
            container_name=DEFAULT_DATASTORE,
            description=f"Local folder {folder}",
        )

    def list(self, *, include_secrets: bool = False) -> Iterator[Datastore]:
        _refuse_secrets(include_secrets)
        return iter([self.get_default(), *(_to_entity(r) for r in self._catalog.list_resources("datastore"))])

    def delete(self, name: str) -> None:
        """Remove the datastore's registration; its folder and files stay, as the storage does on Azure."""
        if name.lower() == DEFAULT_DATASTORE:
            raise LocalMLValidationError(f"Datastore '{name}' is the workspace's default datastore and cannot be deleted.")
        if not self._catalog.delete_resource("datastore", name.lower()):
            raise not_found("Datastore", name, known=self._workspace.datastore_names())


def _refuse_secrets(include_secrets: bool) -> None:
    if include_secrets:
        raise UnsupportedFeatureError("include_secrets=True", NO_SECRETS_HINT)


def _redacted(datastore: Datastore) -> dict:
    """The datastore's REST body with its credentials' secrets left out, as Azure's get returns it."""
    body = datastore._to_rest_object().as_dict()
    body["properties"].get("credentials", {}).pop("secrets", None)
    return {**body, "name": datastore.name}


def _to_entity(record: dict) -> Datastore:
    return Datastore._from_rest_object(RestDatastore(record))
