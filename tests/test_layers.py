"""The layers of DESIGN.md, checked on every import statement of the code (the function-level ones too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> list[tuple[str, str]]:
    """(file, top-level module) for every import in a package."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [(path.relative_to(ROOT).as_posix(), alias.name.split(".")[0]) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.append((path.relative_to(ROOT).as_posix(), node.module.split(".")[0]))
    return found


def _offenders(package: str, forbidden: set[str], allowed_files: tuple[str, ...] = ()) -> list[str]:
    return [f"{file} imports {module}" for file, module in _imports(package) if module in forbidden and file not in allowed_files]


def test_the_shared_rules_import_neither_workspace_nor_orchestration():
    assert _offenders("amlkit", {"localml", "tasks", "flows", "amlflows", "prefect"}) == []


def test_localml_never_imports_prefect_or_the_orchestration_layers():
    assert _offenders("localml", {"prefect", "tasks", "flows", "amlflows"}) == []


def test_tasks_reach_the_local_workspace_only_through_the_workspace_module():
    assert _offenders("tasks", {"localml", "flows", "amlflows"}, allowed_files=("tasks/workspace.py",)) == []


def test_flows_import_only_tasks_prefect_pydantic_and_the_standard_library():
    allowed = {"flows", "tasks", "prefect", "pydantic", *sys.stdlib_module_names}
    assert [f"{file} imports {module}" for file, module in _imports("flows") if module not in allowed] == []


@pytest.mark.parametrize("package", ["amlkit", "localml", "tasks", "flows"])
def test_the_import_check_sees_every_package(package):
    # a check over an empty or misnamed folder would pass whatever the code did
    assert len(_imports(package)) > 10


def test_the_job_runner_starts_without_the_sdk_mlflow_or_prefect():
    # a runner starts per job: each of these costs seconds of CPU, which every job would pay
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, localml.execution.runner; print(' '.join(sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert [m for m in loaded if m.split(".")[0] in ("azure", "mlflow", "prefect", "sklearn", "pandas")] == []
