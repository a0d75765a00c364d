"""Catch what one thread prints, line by line, without touching what other threads print.

``jobs.stream`` (Azure's and localml's alike) prints a job's log to stdout and
blocks until the job ends; ``wait_for_job`` runs it on a thread of its own and
turns those lines into Prefect log records.
"""

from __future__ import annotations

import io
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_lock = threading.Lock()


class _ThreadRoutedStdout(io.TextIOBase):
    def __init__(self, fallback):
        self.fallback = fallback
        self.routes: dict[int, tuple[Callable[[str], None], list[str]]] = {}

    def write(self, text: str) -> int:
        route = self.routes.get(threading.get_ident())
        if route is None:
            return self.fallback.write(text)
        callback, pending = route
        pending.append(text)
        *lines, rest = "".join(pending).split("\n")
        pending[:] = [rest]
        for line in lines:
            callback(line)
        return len(text)

    def flush(self) -> None:
        self.fallback.flush()


@contextmanager
def lines_printed_by_this_thread(callback: Callable[[str], None]) -> Iterator[None]:
    """Within the block, each complete line this thread prints goes to ``callback`` instead of stdout."""
    ident = threading.get_ident()
    with _lock:
        if not isinstance(sys.stdout, _ThreadRoutedStdout):
            sys.stdout = _ThreadRoutedStdout(sys.stdout)
        router = sys.stdout
        router.routes[ident] = (callback, [])
    try:
        yield
    finally:
        with _lock:
            _, pending = router.routes.pop(ident)
            if pending and pending[0]:
                callback(pending[0])
            if not router.routes and sys.stdout is router:
                sys.stdout = router.fallback
