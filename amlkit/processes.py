"""Is the process recorded as (pid, start time) still the one running? A pid alone can be reused, so the process's
start time is kept with it. localml's jobs and endpoints and a rollout's record (``tasks/rollout.py``) ask it."""

from __future__ import annotations

import psutil

#: How far a process's start time, as another process reads it, may move by whole seconds. Linux recomputes the
#: boot time (``btime`` in /proc/stat, which psutil adds to a process's ticks since boot) from the wall clock on
#: every read, so a clock being slewed by NTP shifts it by a second now and then (giampaolo/psutil#2526): a live
#: router read as dead was started again, and the second one could not listen on the first one's port.
BOOT_TIME_JITTER_SECONDS = 2


def start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process recorded as (pid, start time) still runs: the pid alone may have been reused since.

    A reused pid belongs to a process started later, by far more than the boot time's whole-second jitter, which
    is all the comparison forgives."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        shift = process.create_time() - (started or 0.0)
        same_start = abs(shift - round(shift)) < 0.01 and abs(round(shift)) <= BOOT_TIME_JITTER_SECONDS
        return same_start and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
