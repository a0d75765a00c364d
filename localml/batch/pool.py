"""A batch job's worker processes, forked from the driver, and the pipes the driver talks to them on.

Forking, not starting a new interpreter, is what makes a worker cheap: an MLflow model the driver loaded once
(importing MLflow and scikit-learn costs seconds) is already in every worker, copy-on-write. That is safe because
the driver is single-threaded and never predicts itself: no thread, lock or OpenMP pool of the driver is copied
half-way through its work. A worker killed on a timeout is replaced by a new fork at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from localml.batch.worker import serve


class WorkerDied(Exception):
    """The worker ended (or was killed) before answering."""


@dataclass
class Attempt:
    """A mini-batch a worker is scoring: which try it is, when it started and when it runs over its timeout."""

    index: int
    number: int
    started: float
    deadline: float | None


class Worker:
    """One forked worker in slot ``slot``: its pid, its task pipe (written here) and its reply pipe (read here)."""

    def __init__(self, slot: int, make_scorer: Callable[[], Any], others: list["Worker"]):
        self.slot = slot
        self.ready = False
        self.attempt: Attempt | None = None
        self.buffer = b""
        task_read, self.tasks = os.pipe()
        self.replies, reply_write = os.pipe()
        sys.stdout.flush()  # else the worker's copy of the buffer is printed twice
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            inherited = [self.tasks, self.replies] + [fd for other in others for fd in (other.tasks, other.replies)]
            _worker_main(make_scorer, task_read, reply_write, inherited)
        os.close(task_read)
        os.close(reply_write)
        self.status: int | None = None

    def send(self, task: dict) -> None:
        """Hand the worker a task; WorkerDied if it is gone."""
        try:
            os.write(self.tasks, (json.dumps(task) + "\n").encode())
        except BrokenPipeError as error:
            raise WorkerDied(f"worker {self.slot} exited with status {self.stop()}") from error

    def read(self) -> list[dict]:
        """The whole replies the pipe holds now (call when select says it is readable); WorkerDied on its end."""
        chunk = os.read(self.replies, 65536)
        if not chunk:
            raise WorkerDied(f"worker {self.slot} exited with status {self.stop()}")
        *lines, self.buffer = (self.buffer + chunk).split(b"\n")
        return [json.loads(line) for line in lines]

    def kill(self) -> None:
        """Kill the process at once (a cancel's signal handler calls this: no waiting, no closing)."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> int:
        """Kill the worker if it still runs, reap it and close its pipes; its exit status."""
        if self.status is None:
            self.kill()
            self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            os.close(self.tasks)
            os.close(self.replies)
        return self.status


def _worker_main(make_scorer: Callable[[], Any], tasks: int, replies: int, inherited: list[int]) -> None:
    """The forked child: never returns into the driver's code."""
    status = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the driver's handler is the driver's: a cancel kills us
        for fd in inherited:  # the driver's ends of every pipe: else a worker's death or EOF goes unseen
            os.close(fd)
        status = serve(make_scorer, tasks, replies)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
