"""What a batch job's worker does: score the mini-batches the driver sends, one at a time (``serve``).

Workers are forked by the driver (``pool.py``). An MLflow model is loaded once, by the driver, before it forks,
so each worker starts with it; a scoring script's ``init()`` runs in each worker, as on Azure. The worker reads
one JSON line per mini-batch from its task pipe: ``{"id": 3, "files": [...], "part": "<path>"}``. For each it
writes the mini-batch's output rows to ``part`` (whole or not at all, so a retried mini-batch never leaves half
its rows) and answers on its reply pipe: ``{"id": 3, "ok": true, "rows": 200}`` or ``{"id": 3, "ok": false,
"error": "..."}``. The first answer says whether loading worked: ``{"ready": true}`` or ``{"ready": false,
"error": "..."}``. Its stdout and stderr are the job's log, so a scoring script's prints and tracebacks land there.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from localml.serving.host import load_scoring_script, use_one_thread  # the host module imports only the standard library

#: The files an MLflow deployment reads, as Azure's MLflow batch scoring does
TABLE_SUFFIXES = (".csv", ".parquet")


class BadFile(Exception):
    """A file the model cannot score; the message names the file, what is wrong and what the model expects."""


def read_table(path: Path):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise BadFile(f"{path.name}: MLflow batch deployments read CSV and parquet files, not '{suffix or path.name}'. "
                  "Keep only those in the input folder, or deploy with a scoring script that reads this type.")


class MlflowScorer:
    """An MLflow model scored file by file; each output row is ``row,prediction,file`` (Azure's append_row layout)."""

    def __init__(self, model_dir: str):
        import mlflow.pyfunc

        self.pyfunc = mlflow.pyfunc.load_model(model_dir)
        try:
            use_one_thread(self.pyfunc.get_raw_model())  # concurrency comes from the workers, as on Azure
        except NotImplementedError:
            pass
        schema = self.pyfunc.metadata.get_input_schema()
        named = schema is not None and not schema.is_tensor_spec() and all(spec.name for spec in schema.inputs)
        self.columns = [spec.name for spec in schema.inputs] if named else None
        self.required = [spec.name for spec in schema.inputs if getattr(spec, "required", True)] if named else None

    def score(self, files: list[str]) -> tuple[list[list[Any]], int]:
        rows = []
        for file in files:
            frame = self._checked(Path(file), read_table(Path(file)))
            values = prediction_values(self.pyfunc.predict(frame))
            rows += [[number, value, Path(file).name] for number, value in enumerate(values)]
        return rows, len(rows)

    def _checked(self, path: Path, frame):
        """The file's columns as the model's signature names them; BadFile naming the missing and extra ones."""
        if not self.columns:
            return frame
        missing = [name for name in self.required if name not in frame.columns]
        extra = [str(name) for name in frame.columns if name not in self.columns]
        if missing:
            raise BadFile(f"{path.name} lacks the column(s) {', '.join(missing)}"
                          + (f" and has column(s) the model does not know: {', '.join(extra)}" if extra else "")
                          + f"; the model expects the columns {', '.join(self.columns)}.")
        if extra:
            print(f"[batch] {path.name}: column(s) {', '.join(extra)} are not in the model's signature and are ignored.", flush=True)
        return frame[[name for name in self.columns if name in frame.columns]]


def prediction_values(predictions: Any) -> list:
    """One value per input row: a column's values, or each row's values as a list when the model answers several."""
    if hasattr(predictions, "columns"):  # a DataFrame
        return predictions.iloc[:, 0].tolist() if len(predictions.columns) == 1 else predictions.values.tolist()
    return predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)


class ScriptScorer:
    """A batch ``score.py``: ``init()`` once, then ``run(mini_batch)`` with the mini-batch's file paths; it returns
    a list (one output row per item) or a pandas DataFrame (one output row per row)."""

    def __init__(self, code_dir: str, scoring_script: str):
        script = load_scoring_script(code_dir, scoring_script,
                                     "a batch deployment calls init() once per worker, then run(mini_batch) for each mini-batch.")
        self.run = script.run
        script.init()

    def score(self, files: list[str]) -> tuple[list[list[Any]], int]:
        result = self.run(list(files))
        if hasattr(result, "itertuples"):  # a DataFrame: its rows, without header or index
            return [list(row) for row in result.itertuples(index=False)], len(result)
        if not isinstance(result, (list, tuple)):
            raise TypeError(f"run() returned a {type(result).__name__}; a batch scoring script returns a list or a pandas "
                            "DataFrame, one item or row per scored input.")
        return [list(item) if isinstance(item, (list, tuple)) else [item] for item in result], len(result)


def write_part(path: Path, rows: list[list[Any]]) -> None:
    """The mini-batch's rows as CSV lines, written whole or not at all."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text.getvalue())
    os.replace(partial, path)


def load(config: dict) -> Callable[[], Any]:
    """What makes a worker's scorer: an MLflow model is loaded now, once, for every worker forked after (so each
    starts with it, copy-on-write); a scoring script is only imported and its ``init()`` run in each worker."""
    if config["model_kind"] == "custom":
        return lambda: ScriptScorer(config["code_dir"], config["scoring_script"])
    scorer = MlflowScorer(config["model_dir"])
    return lambda: scorer


def serve(make_scorer: Callable[[], Any], tasks: int, replies: int) -> int:
    """A forked worker's life: make its scorer, say whether that worked, then score each task until the driver
    closes the task pipe; the exit status."""
    answers = os.fdopen(replies, "w", buffering=1)

    def reply(**message: Any) -> None:
        answers.write(json.dumps(message, default=str) + "\n")
        answers.flush()

    try:
        scorer = make_scorer()
    except Exception as error:
        traceback.print_exc()
        reply(ready=False, error=f"{type(error).__name__}: {error}")
        return 1
    reply(ready=True)
    for line in os.fdopen(tasks, "r"):
        task = json.loads(line)
        try:
            rows, count = scorer.score(task["files"])
            if task["part"]:
                write_part(Path(task["part"]), rows)
            reply(id=task["id"], ok=True, rows=count)
        except Exception as error:
            if not isinstance(error, BadFile):
                traceback.print_exc()
            reply(id=task["id"], ok=False, error=f"{type(error).__name__}: {error}")
        sys.stdout.flush()  # the script's prints reach the job's log with their mini-batch
    return 0
