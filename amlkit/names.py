"""Azure ML's naming rules, one per kind of name, each checked with the rule in its message.

Azure refuses a bad name when it is created; localml checks the same rules before it writes anything, and the
flows' parameter models check them before a flow starts. A name that passes is also one path component that
cannot climb out of a folder: no rule allows '/', and each starts with a letter or digit, so never '.' or '..'.

Where the rules come from:
- assets (data, models, environments, components): Azure ML's asset naming, letters, digits, '-', '_' and '.',
  starting with a letter or digit, at most 255 characters. (The SDK's YAML loader is stricter for components,
  ``^[a-z][a-z0-9_]*$``; every name it accepts passes here.)
- compute clusters (AmlCompute): 2 to 16 characters, letters, digits and hyphens, starting with a letter and
  not ending with a hyphen (Azure's resource naming rules, Microsoft.MachineLearningServices/workspaces/computes).
- experiments: letters, digits, '_' and '-', starting with a letter or digit (azureml-core's Experiment
  documentation), at most 255 characters (Azure ML's limits page allows 256; MLflow's store here 255).
- jobs: letters, digits, '_' and '-', starting with a letter or digit, at most 255 characters.
- online endpoints and their deployments: 3 to 32 characters, letters, digits and hyphens, starting with a letter
  and not ending with a hyphen (the SDK's ``EndpointConfigurations.NAME_REGEX_PATTERN`` and length limits).
- datastores: letters, digits and '_' (azureml-core's ``Datastore.register_*`` documentation: "case insensitive,
  can only contain alphanumeric characters and _"), at most 255 characters like the other names here. Case does
  not tell two datastores apart: localml keys them by the name in lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from amlkit.errors import SpecError

#: How much of a long name a message quotes: enough to recognise it, not a screenful.
_QUOTED = 40


@dataclass(frozen=True)
class NameRule:
    kind: str  # what the name names, as a message starts: "Data asset", "Compute", ...
    allowed: str  # the characters, as a regex class body
    allowed_text: str  # the same, in words
    first: str  # the first character's class body
    first_text: str  # empty when any allowed character may start the name
    min_length: int
    max_length: int
    last_may_be_hyphen: bool = True

    @property
    def text(self) -> str:
        """The rule in words, as every refusal states it."""
        length = f"{self.min_length} to {self.max_length}" if self.min_length > 1 else f"at most {self.max_length}"
        start = f", starting with {self.first_text}" if self.first_text else ""
        end = "" if self.last_may_be_hyphen else ", not ending with a hyphen"
        return f"{self.allowed_text}{start}{end}, {length} characters"

    def problem(self, name: object) -> str | None:
        """What is wrong with ``name`` under this rule; None when it follows it."""
        if not isinstance(name, str) or not name:
            return "a name is required"
        if len(name) > self.max_length:
            return f"it has {len(name)} characters"
        if len(name) < self.min_length:
            return f"it has {len(name)} character{'s' if len(name) != 1 else ''}"
        if not re.fullmatch(f"[{self.first}]", name[0]):
            return f"it starts with '{name[0]}'"
        bad = sorted({c for c in name if not re.fullmatch(f"[{self.allowed}]", c)})
        if bad:
            return "it contains " + ", ".join(repr(c) for c in bad)
        if not self.last_may_be_hyphen and name.endswith("-"):
            return "it ends with a hyphen"
        return None

    def check(self, name: object) -> str:
        """``name`` if it follows the rule; else a ``SpecError`` naming the rule and what broke it."""
        problem = self.problem(name)
        if problem is None:
            return name  # type: ignore[return-value]
        raise SpecError(f"{self.kind} name {_quoted(name)} is not valid: {problem}. Azure ML allows {self.text}.")


def _quoted(name: object) -> str:
    if not isinstance(name, str):
        return repr(name)
    return repr(name if len(name) <= _QUOTED else name[:_QUOTED] + "...")


def _asset(kind: str) -> NameRule:
    return NameRule(
        kind=kind,
        allowed=r"A-Za-z0-9_.\-",
        allowed_text="letters, digits, '-', '_' and '.'",
        first="A-Za-z0-9",
        first_text="a letter or digit",
        min_length=1,
        max_length=255,
    )


DATA = _asset("Data asset")
MODEL = _asset("Model")
ENVIRONMENT = _asset("Environment")
COMPONENT = _asset("Component")
COMPUTE = NameRule(
    kind="Compute",
    allowed=r"A-Za-z0-9\-",
    allowed_text="letters, digits and hyphens",
    first="A-Za-z",
    first_text="a letter",
    min_length=2,
    max_length=16,
    last_may_be_hyphen=False,
)
EXPERIMENT = NameRule(
    kind="Experiment",
    allowed=r"A-Za-z0-9_\-",
    allowed_text="letters, digits, '_' and '-'",
    first="A-Za-z0-9",
    first_text="a letter or digit",
    min_length=1,
    max_length=255,
)
ENDPOINT = replace(COMPUTE, kind="Online endpoint", min_length=3, max_length=32)
DEPLOYMENT = replace(ENDPOINT, kind="Deployment")
BATCH_ENDPOINT = replace(ENDPOINT, kind="Batch endpoint")
#: a job's name follows the experiment's rule (both name folders and runs of the MLflow store)
JOB = replace(EXPERIMENT, kind="Job")
DATASTORE = NameRule(
    kind="Datastore",
    allowed=r"A-Za-z0-9_",
    allowed_text="letters, digits and '_'",
    first="A-Za-z0-9_",
    first_text="",
    min_length=1,
    max_length=255,
)
