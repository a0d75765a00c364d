"""``endpoint.json``, the supervisor's word to the router: read, checked, and re-read when the supervisor replaces it.

The format is the contract's (``localml/serving/__init__.py``). The supervisor replaces the file atomically, so a
read never sees half of it; a missing or invalid file still must not stop the router: it keeps the last good
version (and at start, before any, an endpoint with no credential and no deployment, which refuses everything).
"""

from __future__ import annotations

import bisect
import hmac
import itertools
import json
import logging
import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("localml.serving.router")

#: How often, at most, a request makes the router look at the file's identity (one stat call).
CHECK_EVERY_SECONDS = 0.05


class Credential(NamedTuple):
    value: bytes
    expires_at: float | None  # seconds since the epoch; None: never


class Deployment(NamedTuple):
    name: str
    instances: tuple[str, ...]  # "host:port" of each serving process
    max_concurrent_requests_per_instance: int
    request_timeout_seconds: float
    max_body_bytes: int


class Endpoint:
    """One version of ``endpoint.json``, with the traffic split ready for a weighted draw."""

    def __init__(self, name: str, auth_mode: str, credentials: list[Credential], deployments: dict[str, Deployment],
                 traffic: dict[str, int], mirror_traffic: dict[str, int]):
        self.name = name
        self.auth_mode = auth_mode
        self.credentials = credentials
        self.deployments = deployments
        self.traffic = {name: weight for name, weight in traffic.items() if weight > 0}
        self._takers = [deployments[name] for name in self.traffic]
        self._cumulative = list(itertools.accumulate(self.traffic.values()))
        self._total = self._cumulative[-1] if self._cumulative else 0
        # the swagger document comes from the deployment taking the most traffic
        busiest = max(self.traffic, key=self.traffic.get, default=None)
        self.busiest = deployments[busiest] if busiest else None
        mirror = [(deployments[name], percent / 100) for name, percent in mirror_traffic.items() if percent > 0]
        self.mirror: tuple[Deployment, float] | None = mirror[0] if mirror else None

    def pick(self) -> Deployment | None:
        """A deployment drawn by the traffic weights; None when no deployment takes traffic."""
        if not self._total:
            return None
        return self._takers[bisect.bisect_right(self._cumulative, random.random() * self._total)]

    def accepts(self, credential: bytes) -> bool:
        """Whether ``credential`` is one of the endpoint's unexpired keys or tokens (compared in constant time)."""
        now = time.time()
        valid = False
        for known in self.credentials:
            # every credential is compared, so the time taken says nothing about which one nearly matched
            if hmac.compare_digest(known.value, credential) and (known.expires_at is None or known.expires_at > now):
                valid = True
        return valid


#: Before the first good file: no credential is valid and no deployment serves.
NO_ENDPOINT = Endpoint("", "key", [], {}, {}, {})


def parse_endpoint(text: str) -> Endpoint:
    """An ``Endpoint`` from the file's text; ValueError saying what is wrong with it."""
    spec = json.loads(text)
    deployments = {
        name: Deployment(
            name=name,
            instances=tuple(settings["instances"]),
            max_concurrent_requests_per_instance=max(1, int(settings.get("max_concurrent_requests_per_instance", 1))),
            request_timeout_seconds=float(settings.get("request_timeout_ms", 5000)) / 1000,
            max_body_bytes=int(settings.get("max_body_bytes", 100 * 1024 * 1024)),
        )
        for name, settings in spec.get("deployments", {}).items()
    }
    for field in ("traffic", "mirror_traffic"):
        unknown = sorted(set(spec.get(field) or {}) - set(deployments))
        if unknown:
            raise ValueError(f"{field} names {unknown}, which are not in deployments {sorted(deployments)}")
    credentials = [Credential(str(item["value"]).encode(), _epoch_seconds(item.get("expires_at")))
                   for item in spec.get("credentials", [])]
    return Endpoint(spec.get("name", ""), spec.get("auth_mode", "key"), credentials, deployments,
                    spec.get("traffic") or {}, spec.get("mirror_traffic") or {})


def _epoch_seconds(expires_at) -> float | None:
    """``expires_at`` as seconds since the epoch: null, a number of seconds, or an ISO 8601 time (UTC if naive)."""
    if expires_at is None or isinstance(expires_at, (int, float)):
        return expires_at
    moment = datetime.fromisoformat(expires_at)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class EndpointFile:
    """The endpoint as ``endpoint.json`` last said, re-read when the file is replaced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.endpoint = NO_ENDPOINT
        self._identity = None  # the (inode, mtime, size) last read, good or bad: a bad file is reported once
        self._checked_at = float("-inf")

    def refresh(self, now: float) -> bool:
        """Look at the file if the last look is older than ``CHECK_EVERY_SECONDS``; True when the endpoint changed."""
        if now - self._checked_at < CHECK_EVERY_SECONDS:
            return False
        self._checked_at = now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._identity != "missing":
                self._identity = "missing"
                log.warning("%s is missing: the router keeps %s", self.path, self._kept())
            return False
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if identity == self._identity:
            return False
        self._identity = identity
        try:
            self.endpoint = parse_endpoint(self.path.read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.error("%s is not a valid endpoint file (%s: %s): the router keeps %s",
                      self.path, type(error).__name__, error, self._kept())
            return False
        endpoint = self.endpoint
        log.info("endpoint %s: traffic %s, mirror %s, instances %s", endpoint.name, endpoint.traffic,
                 f"{endpoint.mirror[1]:.0%} to {endpoint.mirror[0].name}" if endpoint.mirror else "none",
                 {d.name: list(d.instances) for d in endpoint.deployments.values()})
        return True

    def _kept(self) -> str:
        return "the last good version" if self.endpoint is not NO_ENDPOINT else "refusing every request until it is valid"

