"""The errors localml raises: Azure's own types, so code written for Azure catches them unchanged."""

from __future__ import annotations

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from amlkit.errors import SpecError, UnsupportedFeatureError

#: localml's name for a spec that cannot run (users of earlier versions catch it by this name).
LocalMLValidationError = SpecError

__all__ = ["LocalMLValidationError", "UnsupportedFeatureError", "already_exists", "not_found"]


def not_found(kind: str, name: str, version: str | None = None, known: list[str] | None = None) -> ResourceNotFoundError:
    """Azure's not-found error, naming what was asked for and what exists instead."""
    what = f"{kind} '{name}'" + (f" version '{version}'" if version else "")
    hint = f" Known: {', '.join(known)}." if known else f" No {kind} of that name is registered."
    return ResourceNotFoundError(f"{what} was not found in the local workspace.{hint}")


def already_exists(kind: str, name: str, hint: str) -> ResourceExistsError:
    """Azure's conflict error (HTTP 409), naming what exists and what to do instead."""
    error = ResourceExistsError(f"{kind} '{name}' already exists in the local workspace. {hint}")
    error.status_code, error.reason = 409, "Conflict"
    return error
