"""What a training script accepts, read from its argparse calls without running it.

Lets a flow reject a hyperparameter the script does not take, or a value of the
wrong type, before a job is submitted.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

_TYPES = {"int": int, "float": float, "str": str}


def script_arguments(script: str | Path) -> dict[str, str | None]:
    """``{"learning_rate": "float", ...}`` for each ``add_argument("--name", type=...)`` in the script.

    The type is None when the call names none (argparse then passes a string) or names a function.
    A script that does not parse is reported with its line number.
    """
    source = Path(script).read_text()
    try:
        tree = ast.parse(source, filename=str(script))
    except SyntaxError as error:
        raise ValueError(f"{script} has a syntax error at line {error.lineno}: {error.msg}. Fix the script.") from None
    arguments: dict[str, str | None] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        long_flags = [f for f in flags if f.startswith("--")]
        if not long_flags:
            continue
        declared = next((k.value for k in node.keywords if k.arg == "type"), None)
        type_name = declared.id if isinstance(declared, ast.Name) and declared.id in _TYPES else None
        arguments[long_flags[0][2:].replace("-", "_")] = type_name
    return arguments


def check_arguments(script: str | Path, values: dict[str, Any]) -> None:
    """Raise ValueError naming each value the script would reject (unknown option, wrong type)."""
    declared = script_arguments(script)
    if not declared:
        return
    for name, value in values.items():
        if name not in declared:
            raise ValueError(
                f"{Path(script).name} has no --{name} argument; it accepts: {', '.join('--' + n for n in sorted(declared))}."
            )
        expected = declared[name]
        if expected is None or expected == "str":
            continue
        if not _converts(value, _TYPES[expected]):
            raise ValueError(
                f"Hyperparameter '{name}' must be {expected} ({Path(script).name} declares type={expected}), got {value!r}."
            )


def _converts(value: Any, kind: type) -> bool:
    """What argparse will do with the value once it is written into the command line."""
    try:
        kind(str(value))
    except ValueError:
        return False
    return True
