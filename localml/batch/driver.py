"""The program a batch scoring job runs: ``python -m localml.batch.driver --config batch.json --input DIR --output DIR``.

It splits the input's files into mini-batches of ``mini_batch_size`` and scores them on ``instances`` x
``max_concurrency_per_instance`` worker processes (``worker.py``), forked from it (``pool.py``): an MLflow model is
loaded here once, before the forks, so the workers start with it; a scoring script's ``init()`` runs once in each
worker, as on Azure. The driver is one thread, one loop over the workers' reply pipes. A mini-batch that
fails, or runs over ``retry_settings.timeout`` (its worker is killed and a new one started), is tried again up to
``max_retries`` times; then its files count against ``error_threshold`` (-1: never fail the job). Each mini-batch's
rows go to their own part file, so a retried one is written once; append_row then joins the parts, in order, into
``output_file_name``. The summary goes to the log and to ``outputs/batch_summary.json`` (the job's properties).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from amlkit.batch import files_to_score
from localml.batch.output import SUMMARY_FILE, Outcome, assemble, count_rows, part_file, summarize
from localml.batch.pool import Attempt, Worker, WorkerDied
from localml.batch.worker import load


#: The deployment's logging_level: warning shows failures, retries and the summary; info adds each mini-batch that
#: scored; debug adds the workers' starts
LEVELS = {"debug": 10, "info": 20, "warning": 30}
shown_level = LEVELS["info"]


def log(message: str, level: str = "info") -> None:
    if LEVELS[level] >= shown_level:
        print(f"[batch] {message}", flush=True)


@dataclass
class BatchRun:
    """The job's mini-batches, dispatched by one loop over the workers' reply pipes: single-threaded, so that forking
    a worker copies no half-held lock."""

    config: dict
    mini_batches: list[list[str]]
    make_scorer: Callable[[], Any] | None = None
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    next_index: int = 0
    retries: deque = field(default_factory=deque)  # (index, next attempt, last error): run before new mini-batches
    failed_files: int = 0
    fatal: str | None = None
    workers: dict[int, Worker] = field(default_factory=dict)  # by slot

    def run(self, slots: int) -> None:
        for slot in range(1, slots + 1):
            self._start(slot)
        while self._dispatch():
            self._wait()
        for worker in self.workers.values():
            worker.stop()
        for index, attempt, error in self.retries:  # every worker failed to start: nothing can try these again
            self._give_up(index, attempt - 1, error)

    def _start(self, slot: int) -> None:
        others = [worker for number, worker in self.workers.items() if number != slot]  # not the one it replaces
        self.workers[slot] = Worker(slot, self.make_scorer, others)

    def _next_task(self) -> tuple[int, int] | None:
        if self.retries:  # a mini-batch being retried finishes its tries, even past the error threshold
            index, attempt, _ = self.retries.popleft()
            return index, attempt
        if self.fatal is not None or self.next_index >= len(self.mini_batches):
            return None
        self.next_index += 1
        return self.next_index - 1, 1

    def _dispatch(self) -> bool:
        """Give each idle worker a mini-batch; whether any worker is still starting or busy."""
        for worker in list(self.workers.values()):
            if worker.ready and worker.attempt is None and (task := self._next_task()) is not None:
                index, number = task
                part = part_file(index) if self.config["output_action"] == "append_row" else None
                timeout = self.config["retry_settings"]["timeout"]
                now = time.monotonic()
                worker.attempt = Attempt(index, number, now, now + timeout if timeout else None)
                try:
                    worker.send({"id": index, "files": self.mini_batches[index], "part": str(part) if part else None})
                except WorkerDied as error:
                    self._lost(worker, f"the worker died ({error}); a new one was started")
        return any(not worker.ready or worker.attempt for worker in self.workers.values())

    def _wait(self) -> None:
        """Wait for replies, or the first deadline, and handle what came."""
        deadlines = [w.attempt.deadline for w in self.workers.values() if w.attempt and w.attempt.deadline]
        timeout = max(min(deadlines) - time.monotonic(), 0) if deadlines else None
        readable, _, _ = select.select([w.replies for w in self.workers.values()], [], [], timeout)
        for worker in list(self.workers.values()):
            if worker.replies in readable:
                try:
                    replies = worker.read()
                except WorkerDied as error:
                    self._lost(worker, f"the worker died ({error}); a new one was started")
                    continue
                for reply in replies:
                    self._answered(worker, reply)
            elif worker.attempt and worker.attempt.deadline and time.monotonic() >= worker.attempt.deadline:
                self._lost(worker, f"ran over its timeout of {self.config['retry_settings']['timeout']} s; "
                                   "the worker was stopped and a new one started")

    def _answered(self, worker: Worker, reply: dict) -> None:
        if worker.ready:
            attempt, worker.attempt = worker.attempt, None
            self._finished(worker.slot, attempt, reply)
        elif reply.get("ready"):
            worker.ready = True
            log(f"worker {worker.slot} (pid {worker.pid}) loaded the model", "debug")
        else:
            self._failed_start(worker, reply.get("error"))

    def _lost(self, worker: Worker, error: str) -> None:
        """The worker died or ran over its timeout: stop it, start a new one at once, fail its attempt."""
        worker.stop()
        if not worker.ready:
            self._failed_start(worker, error)
            return
        self._start(worker.slot)
        if worker.attempt is not None:
            self._finished(worker.slot, worker.attempt, {"ok": False, "error": error})

    def _failed_start(self, worker: Worker, error: str | None) -> None:
        log(f"worker {worker.slot} (pid {worker.pid}) could not load it", "debug")
        worker.stop()
        del self.workers[worker.slot]
        self.fatal = self.fatal or f"Worker {worker.slot} could not load the model: {error}"

    def _finished(self, slot: int, attempt: Attempt, answer: dict) -> None:
        """Log an attempt's end; record the mini-batch's outcome, or queue its next try."""
        files = self.mini_batches[attempt.index]
        attempts = self.config["retry_settings"]["max_retries"] + 1
        where = (f"mini-batch {attempt.index + 1}/{len(self.mini_batches)} ({names(files)}), "
                 f"attempt {attempt.number}/{attempts} on worker {slot}")
        if answer["ok"]:
            log(f"{where}: scored {answer['rows']} row(s) in {time.monotonic() - attempt.started:.2f} s")
            self._record(attempt.index, Outcome(files, ok=True, rows=answer["rows"]))
            return
        again = attempt.number < attempts
        log(f"{where}: failed: {answer['error']}{'; retrying' if again else ''}", "warning")
        if again:
            self.retries.append((attempt.index, attempt.number + 1, answer["error"]))
        else:
            self._give_up(attempt.index, attempt.number, answer["error"])

    def _give_up(self, index: int, tries: int, error: str) -> None:
        files = self.mini_batches[index]
        log(f"mini-batch {index + 1}/{len(self.mini_batches)} ({names(files)}) failed after {tries} attempt(s): {error}", "warning")
        self._record(index, Outcome(files, rows=sum(count_rows(Path(f)) for f in files), error=error))

    def _record(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome
        if outcome.ok:
            return
        self.failed_files += len(outcome.files)
        threshold = self.config["error_threshold"]
        if threshold != -1 and self.failed_files > threshold and self.fatal is None:
            self.fatal = (f"The error threshold was passed: {self.failed_files} file(s) are in failed mini-batches, "
                          f"and error_threshold is {threshold}. The remaining mini-batches were not scored.")

    def kill_workers(self) -> None:
        for worker in self.workers.values():
            worker.kill()


def names(files: list[str]) -> str:
    return ", ".join(Path(f).name for f in files)


def loaded(config: dict) -> tuple[Callable[[], Any] | None, str | None]:
    """What makes each worker's scorer (an MLflow model loaded here, once), or why the model could not be loaded."""
    # the workers' settings, set here so that every fork has them (and libgomp reads OMP_NUM_THREADS as it loads)
    os.environ["AZUREML_MODEL_DIR"] = str(Path(config["model_dir"]).parent)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # concurrency comes from the workers, as on Azure
    started = time.monotonic()
    try:
        make_scorer = load(config)
    except Exception as error:
        traceback.print_exc()
        return None, f"The driver could not load the model: {type(error).__name__}: {error}"
    if config["model_kind"] != "custom":
        log(f"loaded the model in {time.monotonic() - started:.2f} s, once for every worker", "debug")
    gc.freeze()  # what is loaded stays out of the collector's way, so the workers copy fewer of its pages
    return make_scorer, None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    global shown_level
    shown_level = LEVELS[config["logging_level"].lower()]
    source = Path(args.input)
    files = [str(f) for f in files_to_score(source, "uri_file" if source.is_file() else "uri_folder")]
    if not files:  # invoke checked the input had files; this one was emptied since
        print(f"BatchJobError: the input {source} holds no files to score.", flush=True)
        return 1
    size = config["mini_batch_size"]
    mini_batches = [files[i:i + size] for i in range(0, len(files), size)]
    slots = min(config["instances"] * config["max_concurrency_per_instance"], len(mini_batches))
    log(f"scoring {len(files)} file(s) in {len(mini_batches)} mini-batch(es) of up to {size} with deployment "
        f"'{config['deployment']}' of endpoint '{config['endpoint']}', on {config['instances']} instance(s) x "
        f"{config['max_concurrency_per_instance']} worker(s): {slots} worker(s)", "warning")
    part_file(0).parent.mkdir(exist_ok=True)
    run = BatchRun(config, mini_batches)

    def canceled(*_) -> None:
        run.kill_workers()
        os._exit(143)  # the runner records the job Canceled

    signal.signal(signal.SIGTERM, canceled)
    run.make_scorer, run.fatal = loaded(config)
    if run.fatal is None:
        run.run(slots)
    if config["output_action"] == "append_row" and run.fatal is None:
        assemble(run.outcomes, Path(args.output) / config["output_file_name"])
    summary = summarize(run.mini_batches, run.outcomes, config["error_threshold"])
    SUMMARY_FILE.parent.mkdir(exist_ok=True)
    SUMMARY_FILE.write_text(json.dumps(summary, indent=2))
    log(f"summary: {summary['mini_batches_succeeded']} of {summary['mini_batches']} mini-batch(es) succeeded "
        f"({summary['rows_succeeded']} row(s)), {summary['mini_batches_failed']} failed ({summary['files_failed']} file(s), "
        f"{summary['rows_failed']} row(s)), {summary['mini_batches_not_run']} not run", "warning")
    if run.fatal is not None:
        print(f"BatchJobError: {run.fatal}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The job ends when this process does: tearing down an interpreter holding MLflow, pandas and scikit-learn
    # costs about 0.1 s, for nothing (the workers are reaped, the files closed, the summary written)
    os._exit(status)
