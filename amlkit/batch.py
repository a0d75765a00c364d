"""Which files a batch deployment scores: true of Azure's batch jobs and of localml's."""

from __future__ import annotations

from pathlib import Path


def files_to_score(path: Path, input_type: str = "uri_folder") -> list[Path]:
    """The files a batch job scores, in a stable order: the file itself, or every file under the folder but hidden ones."""
    if input_type == "uri_file":
        return [path] if path.is_file() else []
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
