"""The errors Azure ML's rules raise: Azure's own types, so code written for Azure catches them unchanged."""

from __future__ import annotations

from azure.ai.ml.exceptions import ErrorCategory, ValidationException


class SpecError(ValidationException, ValueError):
    """A spec that cannot run; the message says what to change (a ValueError too, as scikit-learn raises)."""

    def __init__(self, message: str):
        super().__init__(message=message, no_personal_data_message=message, error_category=ErrorCategory.USER_ERROR)


class UnsupportedFeatureError(SpecError, NotImplementedError):
    """A feature of Azure ML that localml does not implement."""

    def __init__(self, feature: str, hint: str = ""):
        super().__init__(f"localml does not support {feature}." + (f" {hint}" if hint else ""))
