"""The ``${{inputs.x}}`` / ``${{outputs.y}}`` placeholders of a job's command, and filling them in.

Free of the SDK at import, so that the job runner, a process per job, fills a command in without
loading it (checking a command at submission raises the SDK's validation error, loaded then).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z0-9_]+)\s*\}\}")
OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)
#: A placeholder, with the quotes around it when the command quotes it itself ('${{inputs.title}}').
QUOTED_PLACEHOLDER = re.compile(
    r"(?P<quote>['\"]?)\$\{\{\s*(?P<group>inputs|outputs)\.(?P<name>[A-Za-z0-9_]+)\s*\}\}(?P=quote)"
)


def render_command(command: str, inputs: dict[str, Any], outputs: dict[str, str]) -> str:
    """The shell command with placeholders replaced; an optional ``$[[...]]`` part is kept only if its inputs are set."""
    values = {"inputs": inputs, "outputs": outputs}

    def optional(match: re.Match) -> str:
        part = match.group(1)
        names = PLACEHOLDER.findall(part)
        return part if all(values[g].get(k) is not None for g, k in names) else ""

    def substitute(match: re.Match) -> str:
        quote = match.group("quote")
        value = str(values[match.group("group")][match.group("name")])
        if quote == "'":  # the command quotes it already (Azure's components do): keep the quotes, escape inside
            return "'" + value.replace("'", "'\\''") + "'"
        if quote == '"':
            return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'
        return shlex.quote(value)

    return QUOTED_PLACEHOLDER.sub(substitute, OPTIONAL.sub(optional, command))


def check_placeholders(command: str, inputs: dict, outputs: dict, job_name: str) -> None:
    """Every ``${{inputs.x}}`` / ``${{outputs.y}}`` must name a declared input or output."""
    from amlkit.errors import SpecError  # loads the SDK: the job runner, which only renders commands, never does

    if not command or not command.strip():
        raise SpecError(f"Job '{job_name}' has an empty command.")
    declared = {"inputs": inputs, "outputs": outputs}
    # an optional part $[[...]] may name an input the job leaves out; it is dropped at run time
    for group, key in PLACEHOLDER.findall(OPTIONAL.sub("", command)):
        if key not in declared[group]:
            known = ", ".join(sorted(declared[group])) or "none"
            raise SpecError(
                f"The command of job '{job_name}' uses ${{{{{group}.{key}}}}}, but the job declares no {group[:-1]} "
                f"named '{key}' (declared {group}: {known}). Add it to {group}= or fix the command."
            )
