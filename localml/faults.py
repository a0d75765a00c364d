"""Fault injection for tests: make chosen operations fail the way Azure does when it is overloaded.

``LOCALML_FAULTS`` lists faults as ``operation=STATUSxTIMES``, comma-separated, for example
``jobs.create_or_update=503x2,jobs.get=429x1``. An operation is ``<group>.<method>`` of any public
operation of the client's groups (``data.list``, ``models.create_or_update``, ``compute.begin_create_or_update``,
``workspaces.get``...). Such a fault is raised before the operation does anything. ``operation@after=...``
raises after the operation has taken effect, as when a reply is lost on the way back. Status ``0`` is a
connection error; ``kill`` ends the calling process with SIGKILL, as a crash would. Counts live in the workspace catalog, so they hold across processes.

``LOCALML_RECORD_OPERATIONS=1`` counts every operation called, in the catalog too (``Catalog.operations_called``):
how a test finds which operations a flow uses, to put a fault on each.
"""

from __future__ import annotations

import functools
import os
import signal
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError

from localml.errors import LocalMLValidationError
from localml.store import Catalog

ENV_VAR = "LOCALML_FAULTS"
RECORD_ENV_VAR = "LOCALML_RECORD_OPERATIONS"
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
        if os.environ.get(RECORD_ENV_VAR):
            self._catalog.count_call(operation)
        self._maybe_raise(operation)

    def after(self, operation: str) -> None:
        self._maybe_raise(f"{operation}@after")

    def wrap(self, group: str, operations: Any) -> "FaultyOperations":
        return FaultyOperations(group, operations, self)

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


class FaultyOperations:
    """An operation group as the client hands it out: each public operation meets the faults injected for
    ``<group>.<operation>``, before it runs and after it took effect.

    Only the caller's door is wrapped: localml's own groups call one another directly (a job's submission
    reading its data asset, ``jobs.create_or_update`` reading back the job), as Azure's service does inside
    one request, so a fault meant for the caller never strikes halfway through a request.
    """

    def __init__(self, group: str, operations: Any, injector: FaultInjector):
        self._group = group
        self._operations = operations
        self._injector = injector

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._operations, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        key = f"{self._group}.{name}"

        @functools.wraps(attribute)
        def operation(*args, **kwargs):
            self._injector.before(key)
            result = attribute(*args, **kwargs)
            self._injector.after(key)
            return result

        return operation

    def __repr__(self) -> str:
        return repr(self._operations)
