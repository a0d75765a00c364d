"""Fault injection for tests: make chosen operations fail the way Azure does when it is overloaded.

``LOCALML_FAULTS`` lists faults as ``operation=STATUSxTIMES``, comma-separated, for example
``jobs.create_or_update=503x2,jobs.get=429x1``. Such a fault is raised before the
operation does anything. ``operation@after=...`` raises after the operation has
taken effect, as when a reply is lost on the way back. Status ``0`` is a
connection error. Counts live in the workspace catalog, so they hold across processes.
"""

from __future__ import annotations

import os
import signal

from azure.core.exceptions import HttpResponseError, ServiceRequestError

from localml.errors import LocalMLValidationError
from localml.store import Catalog

ENV_VAR = "LOCALML_FAULTS"
_REASONS = {408: "RequestTimeout", 429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}


#: The status ``kill``: the calling process ends at once with SIGKILL, as in a crash or an OOM kill. The crash tests
#: stop a flow this way at an exact point (``jobs.create_or_update@after=killx1``: the job made, its reply never read).
KILL = -9


def parse_faults(text: str) -> dict[str, tuple[int, int]]:
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            operation, rule = item.split("=")
            status, times = rule.lower().split("x")
            faults[operation.strip()] = (KILL if status == "kill" else int(status), int(times))
        except ValueError:
            raise LocalMLValidationError(
                f"{ENV_VAR} entry '{item}' is malformed: write operation=STATUSxTIMES, e.g. jobs.get=503x2."
            ) from None
    return faults


class FaultInjector:
    def __init__(self, catalog: Catalog):
        self._catalog = catalog

    def before(self, operation: str) -> None:
        self._maybe_raise(operation)

    def after(self, operation: str) -> None:
        self._maybe_raise(f"{operation}@after")

    def _maybe_raise(self, key: str) -> None:
        text = os.environ.get(ENV_VAR)
        if not text:
            return
        rule = parse_faults(text).get(key)
        if rule is None or not self._catalog.count_fault(key, rule[1]):
            return
        status = rule[0]
        if status == KILL:
            os.kill(os.getpid(), signal.SIGKILL)
        if status == 0:
            raise ServiceRequestError(f"Injected connection error on {key}.")
        error = HttpResponseError(message=f"({_REASONS.get(status, 'Error')}) Injected fault {status} on {key}.")
        error.status_code = status
        error.reason = _REASONS.get(status)
        raise error
