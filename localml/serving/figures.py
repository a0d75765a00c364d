"""Each deployment's live figures over a sliding window: what a safe rollout judges a deployment by.

Every answer the router gives on a deployment's behalf (a live request or a mirrored copy) is one ``Sample``.
``SlidingWindow`` keeps the samples of the last ``MAX_WINDOW_SECONDS`` per deployment, so its memory is
O(requests in that window) and recording one costs an append (old samples leave as new ones come); the figures are
computed when asked. The telemetry issue's durable per-minute buckets take the very same samples: they are another
receiver of ``record``, not a change to this one.

What counts:

- ``requests``: every request the deployment was given, live or mirrored; ``mirrored``: how many of those were
  copies (their answers were dropped, but they count: a mirror deployment is judged on them);
- ``status``: by class of the deployment's own status (for an answer the model gave, the model's status, not the
  424 the router wraps it in; else the router's own 408, 413, 429 or 502);
- ``failures``: 5xx plus 408 (timed out) and 429 (saturated); ``failure_rate`` = failures / requests;
- ``latency_ms``: p50/p90/p95/p99 (nearest rank) of the time from the request's arrival to its answer, or null when
  the window holds no request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import NamedTuple

#: The longest window asked for (a rollout judges minutes of traffic); it bounds what the router keeps.
MAX_WINDOW_SECONDS = 3600
PERCENTILES = (50, 90, 95, 99)
FAILING_4XX = (408, 429)


class Sample(NamedTuple):
    at: float  # time.monotonic() of the answer
    status: int
    latency_ms: float
    mirrored: bool


def is_failure(status: int) -> bool:
    return status >= 500 or status in FAILING_4XX


def percentile(ordered: list[float], pct: int) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summarize(samples: list[Sample]) -> dict:
    """One deployment's figures, as ``GET /.localml/figures`` shows them."""
    status: dict[str, int] = {}
    for sample in samples:
        status_class = f"{sample.status // 100}xx"
        status[status_class] = status.get(status_class, 0) + 1
    failures = sum(1 for sample in samples if is_failure(sample.status))
    latencies = sorted(sample.latency_ms for sample in samples)
    return {
        "requests": len(samples),
        "mirrored": sum(1 for sample in samples if sample.mirrored),
        "status": status,
        "failures": failures,
        "failure_rate": round(failures / len(samples), 4) if samples else 0.0,
        "latency_ms": {f"p{pct}": round(percentile(latencies, pct), 3) if latencies else None for pct in PERCENTILES},
    }


class SlidingWindow:
    """The samples of the last ``MAX_WINDOW_SECONDS``, per deployment."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._samples: dict[str, deque[Sample]] = {}

    def record(self, deployment: str, status: int, latency_ms: float, mirrored: bool = False) -> None:
        now = self._clock()
        samples = self._samples.get(deployment)
        if samples is None:
            samples = self._samples[deployment] = deque()
        samples.append(Sample(now, status, latency_ms, mirrored))
        horizon = now - MAX_WINDOW_SECONDS
        while samples[0].at < horizon:  # the newest sample is never older than the horizon: the loop stops
            samples.popleft()

    def figures(self, window_seconds: float, deployments: list[str]) -> dict:
        """The figures of ``deployments`` (and of any other that answered in the window) over the last ``window_seconds``."""
        since = self._clock() - window_seconds
        names = dict.fromkeys([*deployments, *self._samples])
        return {
            "window_seconds": window_seconds,
            "deployments": {name: summarize(self._in_window(name, since)) for name in names},
        }

    def _in_window(self, deployment: str, since: float) -> list[Sample]:
        samples = self._samples.get(deployment, ())
        # the newest samples are at the right: walk back from there until the window's start
        recent = []
        for sample in reversed(samples):
            if sample.at < since:
                break
            recent.append(sample)
        return recent
