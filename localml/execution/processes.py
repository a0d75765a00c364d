"""Waiting for, stopping and cancelling the processes of jobs and endpoints. Whether a recorded (pid, start time) is
still the same process is ``amlkit.processes``."""

from __future__ import annotations

import os
import select
import signal
import time

import psutil

from amlkit.processes import is_alive
from localml.store import TERMINAL_STATUSES


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
