"""Content hashes of local files and folders: what makes an upload, a code snapshot or a cache key change."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

IGNORED_NAMES = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store", ".localml", ".venv"})


def _skipped(path: Path, exclude: Path | None) -> bool:
    if path.name in IGNORED_NAMES or path.suffix == ".pyc":
        return True
    return exclude is not None and path.name == exclude.name and path.resolve() == exclude


def iter_files(folder: Path, exclude: Path | None = None) -> list[Path]:
    """The files below ``folder`` that an upload takes, in a stable order.

    ``exclude`` is a folder left out wherever it appears below ``folder`` (the workspace root, when a
    code folder holds it): it is not walked at all, so a workspace never uploads into itself.
    """
    files = []
    for directory, subdirs, names in os.walk(folder):
        here = Path(directory)
        subdirs[:] = [d for d in subdirs if not _skipped(here / d, exclude)]
        files.extend(here / name for name in names if not _skipped(here / name, exclude))
    return sorted(files)


def copy_ignore(exclude: Path | None = None):
    """An ``ignore`` for ``shutil.copytree`` that leaves out what ``iter_files`` leaves out."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {name for name in names if _skipped(Path(directory) / name, exclude)}

    return ignore


def content_hash(path: str | Path, exclude: Path | None = None) -> str:
    """SHA-256 over a file's bytes, or over the relative names and bytes of every file in a folder."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"No file or folder at {path}")
    for file in iter_files(path, exclude):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
