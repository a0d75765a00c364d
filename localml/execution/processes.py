"""Is a job's runner still alive? A pid alone can be reused, so the process start time is kept with it."""

from __future__ import annotations

import os
import select
import signal
import time

import psutil

from localml.store import TERMINAL_STATUSES


def start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


#: How far a process's start time, as another process reads it, may move by whole seconds. Linux recomputes the
#: boot time (``btime`` in /proc/stat, which psutil adds to a process's ticks since boot) from the wall clock on
#: every read, so a clock being slewed by NTP shifts it by a second now and then (giampaolo/psutil#2526): a live
#: router read as dead was started again, and the second one could not listen on the first one's port.
BOOT_TIME_JITTER_SECONDS = 2


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


def wait_for_exit(pid: int | None, seconds: float) -> None:
    """Sleep ``seconds``, or less: until process ``pid`` ends, so a waiter sees a job end when it ends.

    Linux tells through a pidfd; elsewhere this is a plain sleep. Either way the caller reads the job's status
    afterwards, so a pid that another process reused costs only the sleep.
    """
    if pid is None or not hasattr(os, "pidfd_open"):
        time.sleep(seconds)
        return
    try:
        descriptor = os.pidfd_open(pid)
    except OSError:  # already gone
        return
    try:
        select.select([descriptor], [], [], seconds)
    finally:
        os.close(descriptor)


def stop_tree(pid: int, grace_seconds: float = 5.0, include_root: bool = True) -> None:
    """Terminate a process's descendants (and the process), then kill whatever outlives the grace period; returns
    once they are gone."""
    try:
        root = psutil.Process(pid)
        processes = root.children(recursive=True) + ([root] if include_root else [])
    except psutil.Error:
        return
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_seconds)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    # a killed process still takes a moment to go: a caller that starts its replacement next must not find it alive
    psutil.wait_procs(alive, timeout=grace_seconds)


def stop_group(leader_pid: int) -> None:
    """Kill what a dead runner left behind: its children share its process group (the group id is its pid)."""
    for process in psutil.process_iter():
        try:
            if process.pid != leader_pid and os.getpgid(process.pid) == leader_pid:
                process.kill()
        except (psutil.Error, OSError):
            pass


def request_cancel(catalog, name: str) -> None:
    """Mark the job CancelRequested and signal its runner, which stops the job's processes and records Canceled."""
    row = catalog.get_job(name)
    if row is None or row["status"] in TERMINAL_STATUSES:
        return
    catalog.update_job(name, only_if_active=True, status="CancelRequested")
    if is_alive(row["pid"], row["pid_started"]):
        os.kill(row["pid"], signal.SIGTERM)


def cancel_children(catalog, parent: str) -> None:
    """A parent job that ends takes its unfinished child jobs (a sweep's trials) with it."""
    for child in catalog.list_jobs(parent):
        request_cancel(catalog, child["name"])
