"""Content hashes of local files and folders: what makes an upload, a code snapshot or a cache key change."""

from __future__ import annotations

import hashlib
from pathlib import Path

IGNORED_NAMES = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store", ".localml", ".venv"})


def iter_files(folder: Path) -> list[Path]:
    """The files below ``folder`` that an upload takes, in a stable order."""
    files = []
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder)
        if any(part in IGNORED_NAMES for part in relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            files.append(path)
    return files


def content_hash(path: str | Path) -> str:
    """SHA-256 over a file's bytes, or over the relative names and bytes of every file in a folder."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"No file or folder at {path}")
    for file in iter_files(path):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
