"""The errors localml raises: Azure's own types, so code written for Azure catches them unchanged."""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError

from amlkit.errors import SpecError, UnsupportedFeatureError

#: localml's name for a spec that cannot run (users of earlier versions catch it by this name).
LocalMLValidationError = SpecError

__all__ = ["LocalMLValidationError", "UnsupportedFeatureError", "not_found"]


def not_found(kind: str, name: str, version: str | None = None, known: list[str] | None = None) -> ResourceNotFoundError:
    """Azure's not-found error, naming what was asked for and what exists instead."""
    what = f"{kind} '{name}'" + (f" version '{version}'" if version else "")
    hint = f" Known: {', '.join(known)}." if known else f" No {kind} of that name is registered."
    return ResourceNotFoundError(f"{what} was not found in the local workspace.{hint}")
