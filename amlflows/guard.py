"""Stops the temporary Prefect server of an ``amlflows run`` that was killed.

With no ``PREFECT_API_URL``, Prefect starts a temporary API server (a uvicorn process) for the flow run
and stops it when the process exits. A process killed with SIGKILL runs no exit handler, so that server
would run on, holding its port and its database. ``amlflows run`` starts this guard beside itself:
``python -m amlflows.guard <pid>``. It notes the temporary servers the watched process starts, and stops
them once that process is gone. It stops nothing else: jobs are meant to outlive the flow that submitted them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

#: the app Prefect's temporary server runs (prefect.server.api.server.SubprocessASGIServer)
SERVER_APP = "prefect.server.api.server:create_app"
POLL_SECONDS = 0.5
STOP_SECONDS = 5.0


def start_guard() -> None:
    """Guard this process's temporary Prefect server (the guard detaches at once, so nothing waits for it)."""
    subprocess.run(
        [sys.executable, "-m", "amlflows.guard", str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )


def guard(pid: int) -> None:
    try:
        watched = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    servers: dict[int, psutil.Process] = {}
    while _alive(watched):
        for child in _children(watched):
            if SERVER_APP in _command_line(child):
                servers[child.pid] = child
        time.sleep(POLL_SECONDS)
    for server in servers.values():
        _stop(server)


def _alive(process: psutil.Process) -> bool:
    # is_running also tells a reused pid from the process we watch
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children()
    except psutil.NoSuchProcess:
        return []


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _stop(server: psutil.Process) -> None:
    if not server.is_running():  # stopped by Prefect at a normal exit
        return
    try:
        server.terminate()
        server.wait(STOP_SECONDS)
    except psutil.TimeoutExpired:
        server.kill()
    except psutil.NoSuchProcess:
        pass


def main(argv: list[str]) -> None:
    if os.fork():  # the caller's subprocess.run returns at once; the guard lives on in its own session
        os._exit(0)
    os.setsid()
    guard(int(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
