"""Registering a version once: a retry after a lost reply finds the version its first attempt made, and two runs
registering the same thing at the same moment end with one version.

Azure numbers a model, environment or data version when it stores it, so a create whose reply was lost and that
is sent again registers a second version. Each registration is tagged with a fingerprint of what it registers;
a registration first looks for a version carrying that fingerprint, as ``submit_job`` looks for its job.

Looking first is not enough when two runs of one spec (say, twenty runs submitted together, four of each spec)
register at the same instant: both look, find nothing and create. Azure offers no lock or conditional create for
asset versions, so each registration looks again after it creates: the earliest version with the fingerprint
stands, and a later duplicate is archived by the run that made it, whichever order the runs came in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

FINGERPRINT_TAG = "amlflows.registration"


def fingerprint(payload: dict) -> str:
    """A stable digest of what a registration registers (its spec, the content hash of its local files)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def register_once(operations: Any, entity: Any, digest: str, tag: str = FINGERPRINT_TAG) -> tuple[Any, bool]:
    """``(the version of entity's name tagged with digest, False)``, else ``(entity registered with that tag, True)``.

    ``operations`` is a workspace's ``models``, ``environments`` or ``data``; a version matches when its ``tag``
    holds ``digest`` and it is of the entity's type.
    """
    if found := _registered(operations, entity, digest, tag):
        return found[0], False
    entity.tags = {**(entity.tags or {}), tag: digest}
    created = operations.create_or_update(entity)
    earliest = _registered(operations, entity, digest, tag)[0]
    if str(earliest.version) != str(created.version):  # another run registered it a moment before this one
        operations.archive(name=created.name, version=created.version)
        return earliest, False
    return created, True


def _registered(operations: Any, entity: Any, digest: str, tag: str) -> list[Any]:
    """The active versions of entity's name that hold this registration, earliest first."""
    return sorted((existing for existing in _versions(operations, entity.name)
                   if (existing.tags or {}).get(tag) == digest and str(getattr(existing, "type", None)) == str(getattr(entity, "type", None))),
                  key=_version_order)


def _version_order(asset: Any) -> tuple[int, str]:
    """Azure's automatic versions are numbers, which sort as numbers (10 after 9); any other version after them."""
    version = str(asset.version)
    return (int(version), "") if version.isdigit() else (2**63, version)


def _versions(operations: Any, name: str) -> list[Any]:
    try:
        return list(operations.list(name=name))
    except ResourceNotFoundError:  # Azure's answer for a name with no version yet
        return []
