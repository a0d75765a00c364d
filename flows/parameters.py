"""What every flow's parameters share: one source of defaults for the Python call, the command line and the
Prefect UI's form.

A flow's signature default is its parameter model built *unvalidated* (``defaults()``): Prefect writes it
into the deployment's parameter schema whole, so the form opens with every field showing the value the flow
really uses, and importing a flow reads no files (some checks look at the data). The flow validates what it
was given when it starts (``validated()``), so a default run is checked exactly like a run from the form or
the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationInfo, field_validator, model_validator

from tasks.names import COMPUTE, DATA, DEPLOYMENT, ENDPOINT, EXPERIMENT, MODEL, NameRule

#: Fields that name something in the workspace, and the rule Azure holds that name to. Any flow's field of one of
#: these names is checked with its parameters (at the command line, in the UI's form), so a name Azure or localml
#: would refuse fails in well under a second, before the flow starts, not minutes into it.
NAME_FIELDS = {"data_name": DATA, "model_name": MODEL, "experiment_name": EXPERIMENT, "compute": COMPUTE, "endpoint_name": ENDPOINT,
               "deployment_name": DEPLOYMENT, "predictions_name": DATA}


def reference_check(check: Callable[[str], object], *fields: str) -> Any:
    """A validator of fields that hold an asset reference (``azureml:NAME:VERSION``): its form needs no workspace,
    so ``--model diabetes`` is refused at the command line, with the forms it may take, not seconds into the flow.
    Whether the asset exists is the flow's to find out."""

    def _is_a_reference(cls, value: str | None) -> str | None:
        if value is not None:
            check(value)
        return value

    return field_validator(*fields)(_is_a_reference)


class FlowParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The rule each name-like field of this flow follows (a flow whose ``endpoint_name`` names a batch endpoint says so).
    name_rules: ClassVar[dict[str, NameRule]] = NAME_FIELDS

    _validated: bool = PrivateAttr(default=False)

    @field_validator(*NAME_FIELDS, check_fields=False)
    @classmethod
    def _follows_azure_naming(cls, value: str, info: ValidationInfo) -> str:
        return cls.name_rules[info.field_name].check(value)

    @model_validator(mode="after")
    def _mark_validated(self) -> Self:
        self._validated = True
        return self

    @classmethod
    def defaults(cls) -> Self:
        """Every field at its default, not yet checked: the flow's signature default."""
        return cls.model_construct()

    def validated(self) -> Self:
        """These parameters, checked (the defaults are checked here, when the flow starts)."""
        if self._validated:
            return self
        return type(self)(**self.model_dump(exclude_unset=True))
