"""What a batch job writes: each mini-batch's rows in its own part file, the output file joined from them in
order (append_row), and the summary of what was scored and what failed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SUMMARY_FILE = Path("outputs") / "batch_summary.json"
PARTS = Path("parts")


@dataclass
class Outcome:
    files: list[str]
    ok: bool = False
    rows: int = 0
    error: str | None = None


def count_rows(path: Path) -> int:
    """The rows of a CSV file (its lines after the header), for the summary of a failed mini-batch; 0 for other files."""
    if path.suffix.lower() != ".csv":
        return 0
    try:
        with open(path, "rb") as rows:
            return max(sum(1 for _ in rows) - 1, 0)
    except OSError:
        return 0


def part_file(index: int) -> Path:
    """Where mini-batch ``index`` writes its rows (in the job's working folder): one file each, so a retry replaces
    what an earlier try wrote instead of adding to it."""
    return PARTS / f"mini-batch-{index:06d}.csv"


def assemble(outcomes: dict[int, Outcome], target: Path) -> None:
    """Join the succeeded mini-batches' parts, in order, into the output file (written whole or not at all)."""
    partial = target.with_name(f".{target.name}.partial")
    with open(partial, "wb") as joined:
        for index in sorted(outcomes):
            if outcomes[index].ok:
                joined.write(part_file(index).read_bytes())
    os.replace(partial, target)


def summarize(mini_batches: list[list[str]], outcomes: dict[int, Outcome], error_threshold: int) -> dict:
    """What the job did, for its log and its properties (``outputs/batch_summary.json``)."""
    failed = [o for o in outcomes.values() if not o.ok]
    return {
        "mini_batches": len(mini_batches),
        "mini_batches_succeeded": sum(1 for o in outcomes.values() if o.ok),
        "mini_batches_failed": len(failed),
        "mini_batches_not_run": len(mini_batches) - len(outcomes),
        "files": sum(len(files) for files in mini_batches),
        "files_failed": sum(len(o.files) for o in failed),
        "rows_succeeded": sum(o.rows for o in outcomes.values() if o.ok),
        "rows_failed": sum(o.rows for o in failed),
        "error_threshold": error_threshold,
        "failures": [{"files": [Path(f).name for f in o.files], "error": o.error} for o in failed],
    }
