"""A process recorded by (pid, start time) is recognised as the same process while it runs, and only then."""

from __future__ import annotations

import os
import subprocess
import sys

from amlkit.processes import is_alive, start_time


def test_a_running_process_is_alive_even_when_the_boot_time_read_for_it_moved_by_a_whole_second():
    started = start_time(os.getpid())
    assert is_alive(os.getpid(), started)
    # Linux recomputes the boot time from the wall clock on each read: another process may see the start 1 s off
    assert is_alive(os.getpid(), started + 1.0) and is_alive(os.getpid(), started - 1.0)


def test_a_pid_whose_process_started_at_another_time_or_has_ended_is_not_alive():
    started = start_time(os.getpid())
    assert not is_alive(os.getpid(), started + 0.5)  # not a whole-second shift: another process
    assert not is_alive(os.getpid(), started - 60)  # a reused pid: its process started long after the recorded one
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    recorded = start_time(ended.pid)
    ended.wait()
    assert not is_alive(ended.pid, recorded)
    assert not is_alive(None, None)
