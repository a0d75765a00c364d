"""Registering a version once: a retry after a lost reply finds the version its first attempt made.

Azure numbers a model or environment version when it stores it, so a create whose reply was lost and that is
sent again registers a second version. Each registration is tagged with a fingerprint of what it registers;
a registration first looks for a version carrying that fingerprint, as ``submit_job`` looks for its job.
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


def register_once(operations: Any, entity: Any, digest: str) -> tuple[Any, bool]:
    """``(the version of entity's name tagged with digest, False)``, else ``(entity registered with that tag, True)``.

    ``operations`` is a workspace's ``models`` or ``environments``.
    """
    for existing in _versions(operations, entity.name):
        if (existing.tags or {}).get(FINGERPRINT_TAG) == digest:
            return existing, False
    entity.tags = {**(entity.tags or {}), FINGERPRINT_TAG: digest}
    return operations.create_or_update(entity), True


def _versions(operations: Any, name: str) -> list[Any]:
    try:
        return list(operations.list(name=name))
    except ResourceNotFoundError:  # Azure's answer for a name with no version yet
        return []
