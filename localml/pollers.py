"""Stand-ins for Azure's LROPoller: ``begin_*`` operations return one, and ``.result()`` gives the entity."""

from __future__ import annotations

import time
from typing import Any, Callable


class DonePoller:
    """An operation that finished before ``begin_*`` returned."""

    def __init__(self, result: Any):
        self._result = result

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None

    def status(self) -> str:
        return "Succeeded"


class WaitingPoller(DonePoller):
    """An operation that finishes when ``is_done()`` says so; ``.result()`` waits for it."""

    def __init__(self, is_done: Callable[[], bool], result: Callable[[], Any], interval: float = 0.2):
        super().__init__(None)
        self._is_done = is_done
        self._make_result = result
        self._interval = interval

    def done(self) -> bool:
        return self._is_done()

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._is_done():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"The operation did not finish within {timeout} s.")
            time.sleep(self._interval)

    def result(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        return self._make_result()

    def status(self) -> str:
        return "Succeeded" if self._is_done() else "InProgress"
