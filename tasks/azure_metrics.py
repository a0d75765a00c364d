"""A deployment's live figures on Azure, from the metrics Azure Monitor keeps for a managed online endpoint.

The pure part of ``read_deployment_figures`` on Azure: which metrics to ask for and how (``MetricsQuery``), and
what the answers add up to (``figures_from_results``). Running the queries is one call each to
``azure.monitor.query.MetricsQueryClient.query_resource``.

The metrics are the endpoint's (resource type ``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``),
as Azure Monitor's "Supported metrics" page for that type lists them:

- ``RequestsPerMinute`` (Count, aggregation Average, time grain PT1M), dimensions ``deployment``, ``statusCode``,
  ``statusCodeClass``, ``modelStatusCode``;
- ``RequestLatency_P50`` / ``_P90`` / ``_P95`` / ``_P99`` (Milliseconds, Average, PT1M), dimension ``deployment``.

They are asked for in two queries, because a query's filter may only name dimensions that every metric in it has:
the requests split by ``statusCode`` for the deployment, and the latencies filtered on the deployment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

#: Requests sent to the endpoint within a minute (Count; Average is its one aggregation).
REQUESTS_METRIC = "RequestsPerMinute"
#: The endpoint's latency percentiles per minute, in milliseconds, by the figures' names for them.
LATENCY_METRICS = {"p50": "RequestLatency_P50", "p90": "RequestLatency_P90",
                   "p95": "RequestLatency_P95", "p99": "RequestLatency_P99"}
DEPLOYMENT_DIMENSION = "deployment"
STATUS_CODE_DIMENSION = "statusCode"
STATUS_CLASS_DIMENSION = "statusCodeClass"
#: The metrics' one time grain.
GRANULARITY = timedelta(minutes=1)
AGGREGATION = "Average"
#: Time series per metric Azure returns for a filtered query (it defaults to 10): one per status code seen.
MAX_SERIES = 100
#: What the router answers for itself that counts against a deployment, beside 5xx: timed out, saturated.
FAILING_4XX = frozenset({408, 429})

#: Azure's rule for endpoint and deployment names, checked before a name goes into a resource id or a filter.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")


@dataclass(frozen=True)
class MetricsQuery:
    """One ``MetricsQueryClient.query_resource`` call."""

    resource_uri: str
    metric_names: tuple[str, ...]
    filter: str
    start: datetime
    end: datetime
    granularity: timedelta = GRANULARITY
    aggregations: tuple[str, ...] = (AGGREGATION,)
    max_results: int = MAX_SERIES

    def run(self, client: Any) -> Any:
        """The ``MetricsQueryResult`` of this query on ``client`` (a ``MetricsQueryClient``)."""
        return client.query_resource(
            self.resource_uri, list(self.metric_names), timespan=(self.start, self.end), granularity=self.granularity,
            aggregations=list(self.aggregations), filter=self.filter, max_results=self.max_results,
        )


@dataclass(frozen=True)
class FiguresQueries:
    requests: MetricsQuery
    latency: MetricsQuery

    @property
    def window_seconds(self) -> float:
        return (self.requests.end - self.requests.start).total_seconds()


def endpoint_resource_id(subscription_id: str, resource_group: str, workspace_name: str, endpoint_name: str) -> str:
    """The online endpoint's ARM id: the resource Azure Monitor keeps its metrics under."""
    _check_name("endpoint", endpoint_name)
    return (f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{workspace_name}/onlineEndpoints/{endpoint_name}")


def build_queries(resource_uri: str, deployment_name: str, window_seconds: float, now: datetime) -> FiguresQueries:
    """The two queries for a deployment's figures over the whole minutes that end at ``now``'s minute.

    Metrics come in one-minute buckets, so the window is rounded up to whole minutes (at least one) and ends at the
    start of the current, unfinished minute.
    """
    _check_name("deployment", deployment_name)
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, not {window_seconds}.")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (Azure Monitor speaks UTC).")
    end = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
    start = end - GRANULARITY * max(1, math.ceil(window_seconds / GRANULARITY.total_seconds()))
    on_deployment = f"{DEPLOYMENT_DIMENSION} eq '{deployment_name}'"
    return FiguresQueries(
        # "<dimension> eq '*'" splits the answer into one time series per value of that dimension
        requests=MetricsQuery(resource_uri, (REQUESTS_METRIC,), f"{on_deployment} and {STATUS_CODE_DIMENSION} eq '*'",
                              start, end),
        latency=MetricsQuery(resource_uri, tuple(LATENCY_METRICS.values()), on_deployment, start, end),
    )


def figures_from_results(deployment_name: str, requests_result: Any, latency_result: Any, window_seconds: float) -> dict:
    """``DeploymentFigures`` fields (less ``deployment``) from the two queries' ``MetricsQueryResult``.

    - ``requests``: RequestsPerMinute summed over the window's minutes (a minute without a value had none);
    - ``status``: those requests by status class (``2xx``, ``4xx``, ``5xx``, ...);
    - ``failures``: 5xx plus 408 (timed out) and 429 (saturated), as localml counts them, read from the
      ``statusCode`` dimension; a series that carries only ``statusCodeClass`` counts its 5xx alone, since a class
      cannot tell 408 and 429 from the other 4xx;
    - ``mirrored``: 0, since the endpoint's metrics have no dimension that tells mirrored copies from live requests;
    - ``latency_ms``: for each percentile, the worst (highest) minute of the window, or None for a window without
      a value.
    """
    per_status: dict[str, float] = {}
    failures = 0.0
    for series in _series(requests_result, REQUESTS_METRIC, deployment_name):
        count = sum(_value(point) or 0.0 for point in series.data)
        code = _dimension(series, STATUS_CODE_DIMENSION)
        status_class = _dimension(series, STATUS_CLASS_DIMENSION)
        if code and code.isdigit():
            status_class = f"{code[0]}xx"
            failed = int(code) >= 500 or int(code) in FAILING_4XX
        else:  # only the class is known: 5xx are failures, a 408 or 429 hides among the other 4xx
            failed = (status_class or "").lower() == "5xx"
        key = (status_class or "unknown").lower()
        per_status[key] = per_status.get(key, 0.0) + count
        failures += count if failed else 0.0
    # the per-minute values are counts; the sum of whole counts is whole, rounding only undoes float noise
    status = {key: round(count) for key, count in sorted(per_status.items()) if round(count)}
    requests = sum(status.values())
    failed_requests = round(failures)
    latency_ms: dict[str, float | None] = {}
    for label, metric in LATENCY_METRICS.items():
        values = [value for series in _series(latency_result, metric, deployment_name)
                  for value in map(_value, series.data) if value is not None]
        # The worst minute, not the mean of the minutes: percentiles do not average (a mean of per-minute p95s is no
        # p95 of anything), while the window's p95 is at most the highest per-minute p95 (if no minute has more than
        # 5% of its requests above M, the window has not either). A gate that passes on this bound passes on the truth.
        latency_ms[label] = max(values) if values else None
    return {
        "window_seconds": window_seconds,
        "requests": requests,
        "mirrored": 0,
        "status": status,
        "failures": failed_requests,
        "failure_rate": failed_requests / requests if requests else 0.0,
        "latency_ms": latency_ms,
    }


def read_figures(metrics_client: Any, resource_uri: str, deployment_name: str, window_seconds: float,
                 now: datetime | None = None) -> dict:
    """Run both queries on ``metrics_client`` (a ``MetricsQueryClient``) and add up their answers."""
    queries = build_queries(resource_uri, deployment_name, window_seconds, now or datetime.now(timezone.utc))
    return figures_from_results(deployment_name, queries.requests.run(metrics_client), queries.latency.run(metrics_client),
                                queries.window_seconds)


def _series(result: Any, metric_name: str, deployment_name: str) -> Iterable[Any]:
    """The metric's time series for the deployment (a series without the dimension is the filter's: it is kept)."""
    for metric in result.metrics:
        if (metric.name or "").lower() != metric_name.lower():
            continue
        for series in metric.timeseries or []:
            deployment = _dimension(series, DEPLOYMENT_DIMENSION)
            if deployment is None or deployment.lower() == deployment_name.lower():
                yield series


def _dimension(series: Any, name: str) -> str | None:
    # matched whatever the case: the names the API hands back need not keep the case of the metric's definition
    for key, value in (series.metadata_values or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _value(point: Any) -> float | None:
    return point.average if point.average is not None else point.total


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name or ""):
        raise ValueError(f"Invalid {kind} name {name!r}: Azure's are 1-32 letters, digits and '-', a letter or digit first.")
