"""Read back the events our flows emit, from the Prefect server the tests run against."""

from __future__ import annotations

import time
from datetime import datetime


def stored_events(name: str, resource: dict[str, str], since: datetime, timeout: float = 30.0) -> list:
    """The events called ``name`` whose resource carries every label of ``resource`` that the Prefect server has
    stored since ``since``. The session's server keeps other tests' events, and events arrive asynchronously, so it
    waits up to ``timeout`` seconds for the first one."""
    from prefect.client.orchestration import get_client as prefect_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    deadline = time.monotonic() + timeout
    with prefect_client(sync_client=True) as client:
        while True:
            page = client.read_events(
                filter=EventFilter(event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)), limit=50
            )
            found = [e for e in page.events if all(e.resource.get(k) == v for k, v in resource.items())]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)
