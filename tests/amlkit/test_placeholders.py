"""Filling in a command's placeholders: values reach the program intact, however the command quotes them."""

import json
import subprocess

from amlkit.placeholders import render_command

AWKWARD = "it's a \"title\" with $HOME and `ticks`"


def arguments(command: str) -> list[str]:
    """What the program receives: bash's own word splitting and unquoting (as the job's runner runs it)."""
    printed = subprocess.run(["/bin/bash", "-c", "printf '%s\\0' " + command], capture_output=True, text=True, check=True)
    return printed.stdout.split("\0")[:-1]


def test_a_bare_placeholder_is_quoted_for_the_shell():
    assert arguments(render_command("run --t ${{inputs.t}}", {"t": AWKWARD}, {})) == ["run", "--t", AWKWARD]


def test_a_placeholder_the_command_quotes_itself_keeps_its_quotes():
    # Azure's components write '${{inputs.x}}' around JSON and free text, and Azure inserts the value as is
    document = json.dumps({"cohort_features": {"Age": [0, 30, 50]}})
    command = "run --t '${{inputs.t}}' --d \"${{inputs.t}}\" --j '${{inputs.j}}' --o ${{outputs.o}}"
    rendered = render_command(command, {"t": AWKWARD, "j": document}, {"o": "/out dir/x"})
    assert arguments(rendered) == ["run", "--t", AWKWARD, "--d", AWKWARD, "--j", document, "--o", "/out dir/x"]


def test_an_optional_part_is_dropped_when_its_input_is_not_given():
    command = "run $[[--m '${{inputs.m}}']] --n ${{inputs.n}}"
    assert arguments(render_command(command, {"m": None, "n": 1}, {})) == ["run", "--n", "1"]
    assert arguments(render_command(command, {"m": "x y", "n": 1}, {})) == ["run", "--m", "x y", "--n", "1"]
