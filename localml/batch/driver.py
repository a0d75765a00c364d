"""The program a batch scoring job runs: ``python -m localml.batch.driver --config batch.json --input DIR --output DIR``.

It splits the input's files into mini-batches of ``mini_batch_size`` and scores them on ``instances`` x
``max_concurrency_per_instance`` worker processes (``worker.py``), each loading the model once. A mini-batch that
fails, or runs over ``retry_settings.timeout`` (its worker is killed and a new one started), is tried again up to
``max_retries`` times; then its files count against ``error_threshold`` (-1: never fail the job). Each mini-batch's
rows go to their own part file, so a retried one is written once; append_row then joins the parts, in order, into
``output_file_name``. The summary goes to the log and to ``outputs/batch_summary.json`` (the job's properties).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from localml.batch import input_files
from localml.batch.output import SUMMARY_FILE, Outcome, assemble, count_rows, part_file, summarize


#: The deployment's logging_level: warning shows failures, retries and the summary; info adds each mini-batch that
#: scored; debug adds the workers' starts
LEVELS = {"debug": 10, "info": 20, "warning": 30}
shown_level = LEVELS["info"]


def log(message: str, level: str = "info") -> None:
    if LEVELS[level] >= shown_level:
        print(f"[batch] {message}", flush=True)


class WorkerDied(Exception):
    """The worker ended (or was killed) before answering."""


class Worker:
    """One worker process and its reply pipe."""

    def __init__(self, number: int, config_file: Path, model_dir: str):
        self.number = number
        reply_read, reply_write = os.pipe()
        env = {**os.environ, "AZUREML_MODEL_DIR": str(Path(model_dir).parent), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "localml.batch.worker", str(config_file), str(reply_write)],
            stdin=subprocess.PIPE, text=True, pass_fds=(reply_write,), env=env,
        )
        os.close(reply_write)
        self.replies = reply_read
        self.buffer = b""

    def ask(self, task: dict, timeout: float | None) -> dict:
        self.process.stdin.write(json.dumps(task) + "\n")
        self.process.stdin.flush()
        return self.answer(timeout)

    def answer(self, timeout: float | None) -> dict:
        """The worker's next reply; TimeoutError past ``timeout`` seconds, WorkerDied if it ended first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.replies], [], [], remaining)
            if ready:
                chunk = os.read(self.replies, 65536)
                if not chunk:
                    raise WorkerDied(f"worker {self.number} exited with status {self.process.wait()}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.replies)


@dataclass
class BatchRun:
    config: dict
    config_file: Path
    mini_batches: list[list[str]]
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    next_index: int = 0
    failed_files: int = 0
    fatal: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    workers: list[Worker] = field(default_factory=list)

    def take(self) -> int | None:
        with self.lock:
            if self.fatal is not None or self.next_index >= len(self.mini_batches):
                return None
            self.next_index += 1
            return self.next_index - 1

    def record(self, index: int, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes[index] = outcome
            if outcome.ok:
                return
            self.failed_files += len(outcome.files)
            threshold = self.config["error_threshold"]
            if threshold != -1 and self.failed_files > threshold and self.fatal is None:
                self.fatal = (f"The error threshold was passed: {self.failed_files} file(s) are in failed mini-batches, "
                              f"and error_threshold is {threshold}. The remaining mini-batches were not scored.")

    # -- one slot: a worker process taking mini-batches until none are left ------------------------------------
    def serve(self, slot: int) -> None:
        worker = self._start(slot)
        while worker is not None and (index := self.take()) is not None:
            worker = self._score(slot, worker, index)
        if worker is not None:
            worker.stop()

    def _start(self, slot: int) -> Worker | None:
        worker = Worker(slot, self.config_file, self.config["model_dir"])
        with self.lock:
            self.workers.append(worker)
        try:
            ready = worker.answer(timeout=None)
        except WorkerDied as error:
            ready = {"ready": False, "error": str(error)}
        log(f"worker {slot} (pid {worker.process.pid}) {'loaded the model' if ready.get('ready') else 'could not load it'}", "debug")
        if not ready.get("ready"):
            with self.lock:
                self.fatal = self.fatal or f"Worker {slot} could not load the model: {ready.get('error')}"
            worker.stop()
            return None
        return worker

    def _score(self, slot: int, worker: Worker, index: int) -> Worker | None:
        """Score mini-batch ``index`` with its retries; the worker to go on with (a new one after a timeout)."""
        files = self.mini_batches[index]
        retry = self.config["retry_settings"]
        attempts = retry["max_retries"] + 1
        part = part_file(index) if self.config["output_action"] == "append_row" else None
        names = ", ".join(Path(f).name for f in files)
        outcome = Outcome(files)
        for attempt in range(1, attempts + 1):
            where = f"mini-batch {index + 1}/{len(self.mini_batches)} ({names}), attempt {attempt}/{attempts} on worker {slot}"
            started = time.monotonic()
            try:
                answer = worker.ask({"id": index, "files": files, "part": str(part) if part else None}, retry["timeout"])
            except TimeoutError:
                answer = {"ok": False, "error": f"ran over its timeout of {retry['timeout']} s; the worker was stopped and a new one started"}
                worker.stop()
                worker = self._start(slot)
            except (WorkerDied, BrokenPipeError) as error:
                answer = {"ok": False, "error": f"the worker died ({error}); a new one was started"}
                worker.stop()
                worker = self._start(slot)
            if answer["ok"]:
                log(f"{where}: scored {answer['rows']} row(s) in {time.monotonic() - started:.2f} s")
                outcome = Outcome(files, ok=True, rows=answer["rows"])
                break
            outcome.error = answer["error"]
            again = "; retrying" if attempt < attempts and worker is not None else ""
            log(f"{where}: failed: {answer['error']}{again}", "warning")
            if worker is None:
                break
        if not outcome.ok:
            outcome.rows = sum(count_rows(Path(f)) for f in files)
            log(f"mini-batch {index + 1}/{len(self.mini_batches)} ({names}) failed after {attempt} attempt(s): {outcome.error}", "warning")
        self.record(index, outcome)
        return worker

    def stop_workers(self) -> None:
        with self.lock:
            workers = list(self.workers)
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()


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
    files = [str(f) for f in input_files(source, "uri_file" if source.is_file() else "uri_folder")]
    if not files:  # invoke checked the input had files; this one was emptied since
        print(f"BatchJobError: the input {source} holds no files to score.", flush=True)
        return 1
    size = config["mini_batch_size"]
    run = BatchRun(config, Path(args.config).resolve(), [files[i:i + size] for i in range(0, len(files), size)])
    slots = min(config["instances"] * config["max_concurrency_per_instance"], len(run.mini_batches))
    log(f"scoring {len(files)} file(s) in {len(run.mini_batches)} mini-batch(es) of up to {size} with deployment "
        f"'{config['deployment']}' of endpoint '{config['endpoint']}', on {config['instances']} instance(s) x "
        f"{config['max_concurrency_per_instance']} worker(s): {slots} worker(s)", "warning")
    part_file(0).parent.mkdir(exist_ok=True)

    def canceled(*_) -> None:
        run.stop_workers()
        os._exit(143)  # the runner records the job Canceled

    signal.signal(signal.SIGTERM, canceled)
    threads = [threading.Thread(target=run.serve, args=(slot,), daemon=True) for slot in range(1, slots + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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
    sys.exit(main(sys.argv[1:]))
