"""Each deployment's live figures over a sliding window: what a safe rollout judges a deployment by.

Every answer the router gives on a deployment's behalf (to a live request or to a mirrored copy) is one sample:
when, its status, its latency, whether it was a copy. ``SlidingWindow`` keeps the samples of the last
``MAX_WINDOW_SECONDS`` per deployment in three flat arrays (14 bytes a sample, no object per request), so its
memory is O(requests in that window) and recording one is an append; the figures are computed when asked. The
telemetry issue's durable per-minute buckets take the very same calls to ``record``: another receiver of them, not
a change to this one.

What counts:

- ``requests``: every request the deployment was given, live or mirrored; ``mirrored``: how many of those were
  copies (their answers were dropped, but a mirror deployment is judged on them);
- ``status``: by class of the deployment's own status (for an answer the model gave, the model's status, not the
  424 the router wraps it in; else the router's own 408, 413, 429 or 502);
- ``failures``: 5xx plus 408 (timed out) and 429 (saturated); ``failure_rate`` = failures / requests;
- ``latency_ms``: p50/p90/p95/p99 (nearest rank) of the time from the request's arrival to its answer, or null when
  the window holds no request.
"""

from __future__ import annotations

import bisect
import math
import time
from array import array

#: The longest window one can ask for (a rollout judges minutes of traffic): it bounds what the router keeps.
MAX_WINDOW_SECONDS = 900
#: Marks a mirrored copy's sample in its status column (statuses stay below 1000).
MIRRORED = 0x8000
PERCENTILES = (50, 90, 95, 99)
FAILING_4XX = (408, 429)


def is_failure(status: int) -> bool:
    return status >= 500 or status in FAILING_4XX


def percentile(ordered: list[float], pct: int) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


class Samples:
    """One deployment's samples, oldest first, in flat arrays; the oldest leave as new ones come."""

    def __init__(self):
        self.at = array("d")  # time.monotonic() of each answer: ascending, so a window's start is a bisection
        self.latency_ms = array("f")
        self.status = array("H")  # the status, plus MIRRORED for a copy
        self._start = 0  # samples before it have left the window

    def append(self, at: float, status: int, latency_ms: float, mirrored: bool) -> None:
        self.at.append(at)
        self.latency_ms.append(latency_ms)
        self.status.append(status | MIRRORED if mirrored else status)
        self._start = bisect.bisect_left(self.at, at - MAX_WINDOW_SECONDS, self._start)
        if self._start > len(self.at) // 2:  # cut the left-behind half off: amortized O(1) per sample
            for column in (self.at, self.latency_ms, self.status):
                del column[:self._start]
            self._start = 0

    def summary(self, since: float) -> dict:
        """The figures of the samples since ``since``, as ``GET /.localml/figures`` shows them."""
        first = bisect.bisect_left(self.at, since, self._start)
        codes = self.status[first:]
        status: dict[str, int] = {}
        failures = mirrored = 0
        for code in codes:
            if code & MIRRORED:
                mirrored += 1
                code &= ~MIRRORED
            status_class = f"{code // 100}xx"
            status[status_class] = status.get(status_class, 0) + 1
            failures += is_failure(code)
        latencies = sorted(self.latency_ms[first:])
        return {
            "requests": len(codes),
            "mirrored": mirrored,
            "status": status,
            "failures": failures,
            "failure_rate": round(failures / len(codes), 4) if codes else 0.0,
            "latency_ms": {f"p{pct}": round(percentile(latencies, pct), 3) if latencies else None
                           for pct in PERCENTILES},
        }


class SlidingWindow:
    """The samples of the last ``MAX_WINDOW_SECONDS``, per deployment."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._samples: dict[str, Samples] = {}

    def record(self, deployment: str, status: int, latency_ms: float, mirrored: bool = False) -> None:
        samples = self._samples.get(deployment)
        if samples is None:
            samples = self._samples[deployment] = Samples()
        samples.append(self._clock(), status, latency_ms, mirrored)

    def figures(self, window_seconds: float, deployments: list[str]) -> dict:
        """The figures of ``deployments``, and of any other that answered in the window, over its last seconds."""
        since = self._clock() - window_seconds
        summaries = {name: samples.summary(since) for name, samples in self._samples.items()}
        shown = [*deployments, *(name for name, summary in summaries.items() if summary["requests"])]
        return {
            "window_seconds": window_seconds,
            "deployments": {name: summaries.get(name) or Samples().summary(since) for name in dict.fromkeys(shown)},
        }
