"""Which failures are worth retrying, and how long to wait between tries.

Only transient faults are retried: connection errors, HTTP 408/429/5xx and an
unresponsive job service. A user error (an invalid spec, a training script that
raised) fails at once with its own message.
"""

from __future__ import annotations

import os
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
RETRIES = 4
#: Seconds before the first retry; each further retry waits twice as long, with jitter.
BASE_DELAY_SECONDS = float(os.environ.get("AMLFLOWS_RETRY_BASE_SECONDS", "2"))
#: The wait before each retry, for the tasks (Prefect adds the jitter) and for a retry inside one (a job's log stream).
RETRY_DELAYS_SECONDS = [BASE_DELAY_SECONDS * 2**attempt for attempt in range(RETRIES)]


class TransientFaultError(RuntimeError):
    """A transient fault (raised from it) told with what the failed try left behind; retried as its cause is."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError, TransientFaultError)):
        return True
    if isinstance(error, HttpResponseError):
        return error.status_code in TRANSIENT_STATUS_CODES or "NotResponding" in str(error)
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry the task only when it failed with a transient fault."""
    try:
        state.result()
    except BaseException as error:  # the state's own exception, re-raised by result()
        return is_transient(error)
    return False


#: Keyword arguments for ``@task`` that give a workspace operation its retry policy.
TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS_SECONDS,
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}
