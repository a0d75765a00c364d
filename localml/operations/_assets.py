"""What every versioned asset shares: Azure's numbering, the ``latest`` label, immutable versions."""

from __future__ import annotations

from typing import Any, Iterator

from azure.ai.ml.constants import ListViewType

from amlkit.names import NameRule
from amlkit.references import parse_asset_reference
from localml.errors import LocalMLValidationError, not_found
from localml.workspace import LocalWorkspace

#: What Azure lets change on an existing version (create_or_update of the same name and version).
MUTABLE_FIELDS = ("description", "tags", "stage")
#: Fields the catalog adds to a stored record.
CATALOG_FIELDS = ("name", "version", "created_at", "archived")


class VersionedAssetOperations:
    kind: str = ""
    title: str = ""
    name_rule: NameRule  # Azure's rule for this kind's names (amlkit.names)

    def __init__(self, workspace: LocalWorkspace):
        self._workspace = workspace
        self._catalog = workspace.catalog

    def _to_entity(self, record: dict) -> Any:
        raise NotImplementedError

    def _check_name(self, name: str | None) -> str:
        """``name`` if it follows Azure's rule for this kind; called before anything is copied in or stored."""
        return self.name_rule.check(name)

    # Hooks for an asset kind with a second home (models: the MLflow registry). _adding and _changed run inside
    # the catalog transaction that makes the change, so the second home sees changes in the catalog's order.
    def _refresh(self, name: str | None) -> None:
        """Bring in versions of ``name`` (every name when None) that were made elsewhere, before a read."""

    def _adding(self, name: str, version: str, record: dict) -> None:
        """A new version is about to be stored; raising rolls its registration back."""

    def _changed(self, record: dict) -> None:
        """A stored version's description, tags, stage or archived flag changed (``record`` as now stored)."""

    def _register(self, name: str | None, version: str | None, record: dict) -> dict:
        """Store ``record`` as ``name:version`` (next number when version is None) and return it.

        A version's content is immutable: registering the same content again returns it, other content is an
        error. Its description, tags and stage may change, as on Azure (get it, change them, create_or_update).
        """
        self._check_name(name)
        if version is not None and not str(version).strip():
            raise LocalMLValidationError(f"{self.title} '{name}': version must not be empty; omit it to take the next number.")
        with self._catalog.transaction() as db:
            if version is None:
                latest = self._catalog.get_asset(self.kind, name, db=db)
                if latest is not None and _same_content(latest, record):
                    return latest
                version = self._catalog.next_version(db, self.kind, name)
            else:
                version = str(version)
                existing = self._catalog.get_asset(self.kind, name, version, db=db)
                if existing is not None:
                    if _same_content(existing, record):
                        return existing
                    if _same_content(existing, _without(record, MUTABLE_FIELDS)):
                        stored = {**_without(existing, CATALOG_FIELDS), **{k: record[k] for k in MUTABLE_FIELDS if k in record}}
                        self._catalog.update_asset(db, self.kind, name, version, stored)
                        updated = self._catalog.get_asset(self.kind, name, version, db=db)
                        self._changed(updated)
                        return updated
                    raise LocalMLValidationError(
                        f"{self.title} '{name}' version '{version}' already exists with other content, and a version "
                        "never changes (only its description, tags and stage may). Register a new version (omit version to take the next number)."
                    )
            self._adding(name, version, record)
            self._catalog.insert_asset(db, self.kind, name, version, record)
        return self._catalog.get_asset(self.kind, name, version)

    def _get_record(self, name: str, version: str | int | None = None, label: str | None = None) -> dict:
        if version is not None and label is not None:
            raise LocalMLValidationError(f"Give either a version or a label for {self.title} '{name}', not both.")
        if version is None and label is None:
            raise LocalMLValidationError(f"Give a version or label='latest' to get {self.title} '{name}'.")
        if label is not None and label != "latest":
            raise LocalMLValidationError(f"Unknown label '{label}' for {self.title} '{name}': localml knows only 'latest'.")
        self._refresh(name)
        record = self._catalog.get_asset(self.kind, name, None if label else str(version))
        if record is None:
            known = [r["version"] for r in self._catalog.list_assets(self.kind, name)]
            raise not_found(self.title, name, version, known=known)
        return record

    def get(self, name: str, version: str | int | None = None, label: str | None = None) -> Any:
        return self._to_entity(self._get_record(name, version, label))

    def resolve_reference(self, reference: str) -> dict:
        """The record behind ``azureml:name:version`` or ``azureml:name@latest``."""
        parsed = parse_asset_reference(reference, require_prefix=False)
        if parsed is None:
            raise LocalMLValidationError(
                f"'{reference}' is not a {self.title} reference: use azureml:<name>:<version> or azureml:<name>@latest."
            )
        return self._get_record(parsed.name, parsed.version, parsed.label)

    def list(self, name: str | None = None, list_view_type: str = ListViewType.ACTIVE_ONLY) -> Iterator[Any]:
        """Every version of ``name``; without a name, the latest version of each asset (as Azure lists containers).

        ``list_view_type`` (``azure.ai.ml.constants.ListViewType``): active versions (the default), archived ones, or all.
        """
        views = {ListViewType.ACTIVE_ONLY: (False,), ListViewType.ARCHIVED_ONLY: (True,), ListViewType.ALL: (False, True)}
        if list_view_type not in views:
            raise LocalMLValidationError(f"list_view_type must be one of {', '.join(v.value for v in views)} "
                                         f"(azure.ai.ml.constants.ListViewType), not {list_view_type!r}.")
        self._refresh(name)
        shown = views[list_view_type]
        records = [r for r in self._catalog.list_assets(self.kind, name, include_archived=True) if bool(r["archived"]) in shown]
        if name is None:
            latest = {r["name"]: r for r in records}
            records = list(latest.values())
        return iter([self._to_entity(r) for r in records])

    def archive(self, name: str, version: str | None = None, label: str | None = None) -> None:
        self._set_archived(name, version, label, True)

    def restore(self, name: str, version: str | None = None, label: str | None = None) -> None:
        self._set_archived(name, version, label, False)

    def _set_archived(self, name: str, version: str | None, label: str | None, archived: bool) -> None:
        if label is not None:
            version = self._get_record(name, label=label)["version"]
        else:
            self._refresh(name)
        version = None if version is None else str(version)
        with self._catalog.transaction() as db:
            if self._catalog.set_archived(db, self.kind, name, version, archived) == 0:
                raise not_found(self.title, name, version)
            for record in self._catalog.list_assets(self.kind, name, include_archived=True, db=db):
                if version in (None, record["version"]):
                    self._changed(record)


def file_asset_fields(record: dict) -> dict:
    """The constructor arguments Data and Model share."""
    return {
        "name": record["name"],
        "version": record["version"],
        "type": record["type"],
        "path": record["path"],
        "description": record.get("description"),
        "tags": record.get("tags") or {},
        "properties": record.get("properties") or {},
    }


def _without(record: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


def _same_content(existing: dict, record: dict) -> bool:
    return all(existing.get(key) == value for key, value in record.items())


def check_type(title: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise LocalMLValidationError(f"{title} type '{value}' is not supported; use one of: {', '.join(allowed)}.")
    return value

