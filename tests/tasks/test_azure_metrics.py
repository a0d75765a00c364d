"""A deployment's figures on Azure, from Azure Monitor's metrics of the endpoint: checked offline, for shape only.

No Azure here: the queries are checked as built, the answers are ``MetricsQueryResult`` objects made of the
library's own model classes as Azure fills them (one point per minute, ``average`` None for a minute without a
value), and one test runs ``MetricsQueryClient`` for real against an ARM-shaped answer served on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.monitor.query import Metric, MetricsQueryClient, MetricsQueryResult, MetricValue, TimeSeriesElement

from tasks.azure_metrics import build_queries, endpoint_resource_id, figures_from_results, read_figures
from tasks.endpoints import DeploymentFigures
from tasks.workspace import azure_metrics_client

SUBSCRIPTION = "6f1c2d3e-0000-4000-8000-00000000abcd"
RESOURCE_ID = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/"
               "workspaces/mlw-dp100/onlineEndpoints/diabetes-ep")
NOW = datetime(2026, 12, 2, 10, 17, 42, 500000, tzinfo=timezone.utc)
START = datetime(2026, 12, 2, 10, 14, tzinfo=timezone.utc)  # three whole minutes before 10:17
LATENCY_METRICS = ("RequestLatency_P50", "RequestLatency_P90", "RequestLatency_P95", "RequestLatency_P99")


def _points(*values: float | None) -> list[MetricValue]:
    return [MetricValue(timestamp=START + timedelta(minutes=i), average=value) for i, value in enumerate(values)]


def _series(dimensions: dict[str, str], *values: float | None) -> TimeSeriesElement:
    return TimeSeriesElement(metadata_values=dimensions, data=_points(*values))


def _metric(name: str, unit: str, *timeseries: TimeSeriesElement) -> Metric:
    return Metric(id=f"{RESOURCE_ID}/providers/Microsoft.Insights/metrics/{name}", type="Microsoft.Insights/metrics",
                  name=name, unit=unit, timeseries=list(timeseries), display_description="")


def _result(*metrics: Metric) -> MetricsQueryResult:
    return MetricsQueryResult(timespan="2026-12-02T10:14:00Z/2026-12-02T10:17:00Z", granularity=timedelta(minutes=1),
                              namespace="Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                              resource_region="westeurope", cost=0, metrics=list(metrics))


def _latency(deployment: str, per_metric: dict[str, tuple[float | None, ...]]) -> MetricsQueryResult:
    return _result(*(_metric(name, "MilliSeconds", _series({"deployment": deployment}, *values))
                     for name, values in per_metric.items()))


def test_the_endpoint_resource_id_names_the_workspace_and_the_endpoint():
    assert endpoint_resource_id(SUBSCRIPTION, "rg-ml", "mlw-dp100", "diabetes-ep") == RESOURCE_ID


def test_the_requests_query_splits_the_deployment_by_status_code_over_whole_minutes():
    queries = build_queries(RESOURCE_ID, "green", 180, NOW)
    requests = queries.requests
    assert requests.resource_uri == RESOURCE_ID
    assert requests.metric_names == ("RequestsPerMinute",)
    assert requests.filter == "deployment eq 'green' and statusCode eq '*'"
    assert (requests.start, requests.end) == (START, datetime(2026, 12, 2, 10, 17, tzinfo=timezone.utc))
    assert requests.granularity == timedelta(minutes=1)
    assert requests.aggregations == ("Average",)
    assert requests.max_results >= 20  # one series per status code: Azure's default of 10 could drop some
    assert queries.window_seconds == 180


def test_the_latency_query_asks_for_the_four_percentiles_of_the_deployment_alone():
    latency = build_queries(RESOURCE_ID, "green", 180, NOW).latency
    assert latency.metric_names == LATENCY_METRICS
    # the latencies have no status dimension: a filter naming one would be refused
    assert latency.filter == "deployment eq 'green'"
    assert (latency.start, latency.end, latency.granularity) == (START, datetime(2026, 12, 2, 10, 17, tzinfo=timezone.utc),
                                                                 timedelta(minutes=1))


@pytest.mark.parametrize(("window_seconds", "minutes"), [(1, 1), (60, 1), (61, 2), (90, 2), (300, 5)])
def test_a_window_is_rounded_up_to_whole_minutes_ending_at_the_current_minute(window_seconds, minutes):
    queries = build_queries(RESOURCE_ID, "green", window_seconds, NOW)
    assert queries.requests.end == datetime(2026, 12, 2, 10, 17, tzinfo=timezone.utc)
    assert queries.requests.end - queries.requests.start == timedelta(minutes=minutes)
    assert queries.window_seconds == minutes * 60


def test_a_window_ends_in_utc_whatever_the_time_zone_of_now():
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert build_queries(RESOURCE_ID, "green", 60, paris).requests.end == datetime(2026, 12, 2, 10, 17, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["green' or deployment eq 'blue", "", "a" * 33, "blue green"])
def test_a_deployment_name_azure_would_not_accept_never_reaches_a_filter(name):
    with pytest.raises(ValueError, match="Invalid deployment name"):
        build_queries(RESOURCE_ID, name, 60, NOW)


def test_requests_add_up_over_the_window_and_5xx_408_and_429_are_failures():
    requests = _result(_metric(
        "RequestsPerMinute", "Count",
        _series({"deployment": "green", "statusCode": "200"}, 60, 58, 62),
        _series({"deployment": "green", "statusCode": "404"}, 1, None, 1),  # a client's error: not the deployment's
        _series({"deployment": "green", "statusCode": "429"}, None, 2, None),
        _series({"deployment": "green", "statusCode": "503"}, 1, None, None),
    ))
    latency = _latency("green", {"RequestLatency_P50": (11, 12, 10), "RequestLatency_P90": (30, 41, 29),
                                 "RequestLatency_P95": (48.5, 87.25, 51), "RequestLatency_P99": (90, 140, 95)})
    figures = DeploymentFigures(deployment="green", **figures_from_results("green", requests, latency, 180))
    assert figures.requests == 185
    assert figures.status == {"2xx": 180, "4xx": 4, "5xx": 1}
    assert figures.failures == 3
    assert figures.failure_rate == pytest.approx(3 / 185)
    # each percentile is the window's worst minute
    assert figures.latency_ms == {"p50": 12, "p90": 41, "p95": 87.25, "p99": 140}
    assert figures.window_seconds == 180 and figures.mirrored == 0


def test_dimension_names_are_matched_whatever_their_case():
    requests = _result(_metric("RequestsPerMinute", "Count",
                               _series({"deployment": "green", "statuscode": "500"}, 2, 2, 0),
                               _series({"Deployment": "green", "STATUSCODE": "200"}, 4, 4, 8)))
    figures = figures_from_results("green", requests, _result(), 180)
    assert (figures["requests"], figures["failures"], figures["failure_rate"]) == (20, 4, 0.2)


def test_with_only_the_status_class_a_5xx_fails_and_a_4xx_does_not():
    requests = _result(_metric("RequestsPerMinute", "Count",
                               _series({"deployment": "green", "statusCodeClass": "2xx"}, 90, 90, 90),
                               _series({"deployment": "green", "statusCodeClass": "4xx"}, 3, 3, 4),  # 429s among them?
                               _series({"deployment": "green", "statusCodeClass": "5xx"}, 0, 5, 5)))
    figures = figures_from_results("green", requests, _result(), 180)
    assert figures["status"] == {"2xx": 270, "4xx": 10, "5xx": 10}
    assert (figures["requests"], figures["failures"]) == (290, 10)


def test_another_deployments_series_counts_for_nothing():
    requests = _result(_metric("RequestsPerMinute", "Count",
                               _series({"deployment": "green", "statusCode": "200"}, 10, 10, 10),
                               _series({"deployment": "blue", "statusCode": "500"}, 50, 50, 50)))
    latency = _result(_metric("RequestLatency_P95", "MilliSeconds", _series({"deployment": "green"}, 20, 25, 22),
                              _series({"deployment": "blue"}, 900, 950, 990)))
    figures = figures_from_results("green", requests, latency, 180)
    assert (figures["requests"], figures["failures"], figures["latency_ms"]["p95"]) == (30, 0, 25)


def test_an_empty_window_has_no_requests_and_null_latencies():
    # a deployment that took no traffic: no series at all for the requests; minutes without a value for the latencies
    requests = _result(_metric("RequestsPerMinute", "Count"))
    latency = _latency("green", {name: (None, None, None) for name in LATENCY_METRICS})
    figures = DeploymentFigures(deployment="green", **figures_from_results("green", requests, latency, 180))
    assert (figures.requests, figures.failures, figures.failure_rate, figures.status) == (0, 0, 0.0, {})
    assert figures.latency_ms == {"p50": None, "p90": None, "p95": None, "p99": None}


def test_minutes_without_a_value_count_no_requests_and_no_latency():
    requests = _result(_metric("RequestsPerMinute", "Count", _series({"deployment": "green", "statusCode": "200"}, None, 7, None)))
    latency = _latency("green", {"RequestLatency_P95": (None, 33.5, None)})
    figures = figures_from_results("green", requests, latency, 180)
    assert (figures["requests"], figures["latency_ms"]["p95"], figures["latency_ms"]["p50"]) == (7, 33.5, None)


def test_the_metrics_client_signs_in_with_the_workspace_clients_credential_in_its_cloud():
    from azure.ai.ml import MLClient
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential("00000000-0000-0000-0000-000000000000", "client-id", "not-a-secret")
    ml_client = MLClient(credential, SUBSCRIPTION, "rg-ml", "mlw-dp100", cloud="AzureChinaCloud")  # no network
    metrics_client = azure_metrics_client(ml_client)
    assert isinstance(metrics_client, MetricsQueryClient)
    assert metrics_client._endpoint == "https://management.chinacloudapi.cn"
    signing_in = metrics_client._client._config.authentication_policy
    assert signing_in._credential is credential
    assert signing_in._scopes == ("https://management.chinacloudapi.cn/.default",)


class _Arm(BaseHTTPRequestHandler):
    """Azure Resource Manager's metrics API as far as the test needs it: records each request, answers as Azure does."""

    requests: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        type(self).requests.append((url.path, query))
        names = query["metricnames"].split(",")
        body = {"cost": 0, "timespan": query["timespan"], "interval": query["interval"],
                "namespace": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints", "resourceregion": "westeurope",
                "value": [_rest_metric(name) for name in names]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _rest_metric(name: str) -> dict:
    def series(dimensions: dict[str, str], values: list[float | None]) -> dict:
        return {"metadatavalues": [{"name": {"value": key, "localizedValue": key}, "value": value}
                                   for key, value in dimensions.items()],
                "data": [{"timeStamp": (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          **({} if value is None else {"average": value})} for i, value in enumerate(values)]}

    if name == "RequestsPerMinute":
        timeseries = [series({"deployment": "green", "statuscode": "200"}, [40, 41, None]),
                      series({"deployment": "green", "statuscode": "408"}, [None, 1, None])]
    else:
        timeseries = [series({"deployment": "green"}, [{"RequestLatency_P95": 64.0}.get(name, 10.0), 70.5, None])]
    return {"id": f"{RESOURCE_ID}/providers/Microsoft.Insights/metrics/{name}", "type": "Microsoft.Insights/metrics",
            "name": {"value": name, "localizedValue": name}, "displayDescription": "", "unit": "Count",
            "timeseries": timeseries, "errorCode": "Success"}


def test_the_library_sends_both_queries_as_built_and_its_answers_add_up_to_the_figures():
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    _Arm.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Arm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # the real client and pipeline; only the sign-in is left out (it needs HTTPS and Entra ID)
        client = MetricsQueryClient(object(), endpoint=f"http://127.0.0.1:{server.server_port}",
                                    authentication_policy=SansIOHTTPPolicy(), retry_total=0)
        figures = read_figures(client, RESOURCE_ID, "green", 180, now=NOW)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    (requests_path, requests_query), (latency_path, latency_query) = _Arm.requests
    assert requests_path.lstrip("/") == latency_path.lstrip("/") == RESOURCE_ID.lstrip("/") + "/providers/Microsoft.Insights/metrics"
    assert requests_query["metricnames"] == "RequestsPerMinute"
    assert requests_query["$filter"] == "deployment eq 'green' and statusCode eq '*'"
    assert latency_query["metricnames"] == ",".join(LATENCY_METRICS)
    assert latency_query["$filter"] == "deployment eq 'green'"
    for query in (requests_query, latency_query):
        assert query["timespan"].startswith("2026-12-02T10:14:00") and "/2026-12-02T10:17:00" in query["timespan"]
        assert (query["interval"], query["aggregation"]) == ("PT1M", "Average")
    assert (figures["requests"], figures["failures"], figures["status"]) == (82, 1, {"2xx": 81, "4xx": 1})
    assert figures["latency_ms"] == {"p50": 70.5, "p90": 70.5, "p95": 70.5, "p99": 70.5}
