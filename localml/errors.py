"""The errors localml raises: Azure's own types, so code written for Azure catches them unchanged."""

from __future__ import annotations

from azure.ai.ml.exceptions import ErrorCategory, ValidationException
from azure.core.exceptions import ResourceNotFoundError


class LocalMLValidationError(ValidationException, ValueError):
    """A spec that cannot run; the message says what to change (a ValueError too, as scikit-learn raises)."""

    def __init__(self, message: str):
        super().__init__(message=message, no_personal_data_message=message, error_category=ErrorCategory.USER_ERROR)


class UnsupportedFeatureError(LocalMLValidationError, NotImplementedError):
    """A feature of Azure ML that localml does not implement."""

    def __init__(self, feature: str, hint: str = ""):
        super().__init__(f"localml does not support {feature}." + (f" {hint}" if hint else ""))


def not_found(kind: str, name: str, version: str | None = None, known: list[str] | None = None) -> ResourceNotFoundError:
    """Azure's not-found error, naming what was asked for and what exists instead."""
    what = f"{kind} '{name}'" + (f" version '{version}'" if version else "")
    hint = f" Known: {', '.join(known)}." if known else f" No {kind} of that name is registered."
    return ResourceNotFoundError(f"{what} was not found in the local workspace.{hint}")
