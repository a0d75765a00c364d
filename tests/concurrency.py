"""Make concurrent submitters really meet: hold the workspace catalog's write lock until every one of them waits for it.

Started together, submitters still drift apart by more than the moment a race needs (a flow run's start-up varies by
tenths of seconds), so a race test would pass by luck. Holding SQLite's write lock, as a busy writer would, parks
each submitter at its first write, after it has looked for the job; released, they all go on from the same point.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

#: Well under the catalog's busy timeout (60 s), after which a parked submitter would give up with "database is locked".
MEETING_TIMEOUT_SECONDS = 40.0


#: How long the calls may take to come near the catalog, when the caller says when they have (``after``).
STARTING_TIMEOUT_SECONDS = 600.0


def meet_at_the_catalog(
    catalog_path: Path, calls: list[Callable[[], object]], after: threading.Event | None = None
) -> list[object]:
    """Run each call on a thread of its own, let them go once all wait for the catalog's write lock, and return
    what each returned or raised.

    ``after``, when given, is set by the calls once all of them are about to reach the catalog: the time to meet
    there counts from then, so a slow start (a flow run's, say) is not taken for a submitter that never came.
    """
    outcomes: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            outcomes[index] = calls[index]()
        except Exception as error:  # the caller checks what each got, errors included
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,), name=f"submitter-{i}") for i in range(len(calls))]
    with closing(sqlite3.connect(catalog_path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        for thread in threads:
            thread.start()
        met = (after is None or after.wait(STARTING_TIMEOUT_SECONDS)) and _wait_until_waiting(len(calls))
        db.execute("ROLLBACK")
    for thread in threads:
        thread.join()
    assert met, f"not every submitter reached the catalog within {MEETING_TIMEOUT_SECONDS:g} s: {outcomes}"
    return outcomes


def _wait_until_waiting(count: int) -> bool:
    deadline = time.monotonic() + MEETING_TIMEOUT_SECONDS
    while _threads_waiting_for_the_catalog() < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _threads_waiting_for_the_catalog() -> int:
    """Threads inside localml's ``immediate_transaction``: with the lock held here, all of them are waiting for it."""
    waiting = 0
    for frame in sys._current_frames().values():
        while frame is not None:
            code = frame.f_code
            if code.co_name == "immediate_transaction" and code.co_filename.endswith(str(Path("localml", "store.py"))):
                waiting += 1
                break
            frame = frame.f_back
    return waiting
