"""The endpoint router as a real process on a real port, in front of small real HTTP servers standing in for hosts.

Each stand-in answers with its deployment's name and counts what it received; a test can make it slow or make it
fail. The router is started with ``python -m localml.serving.router`` exactly as the supervisor starts it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
KEY = "key-one"
OTHER_KEY = "key-two"
AUTH = {"Authorization": f"Bearer {KEY}"}


class StandInHost:
    """A real HTTP/1.1 server in a thread that answers ``{"deployment": name}``; ``sleep``/``status`` change how."""

    def __init__(self, name: str):
        self.name = name
        self.received = 0
        self.sleep = 0.0
        self.status = 200
        self.framing = "length"  # or "chunked", or "close" (no length: the body ends with the connection)
        self._lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real host
            disable_nagle_algorithm = True  # headers and body go in two writes: without it each waits 40 ms for an ACK

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with host._lock:
                    host.received += 1
                time.sleep(host.sleep)
                self._answer(host.status, {"deployment": host.name})

            def do_GET(self):
                self._answer(200, {"swagger": host.name})

            def _answer(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if host.framing == "length":
                    self.send_header("Content-Length", str(len(body)))
                elif host.framing == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    half = len(body) // 2
                    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # the router hangs up on an answer that came too late: the broken pipe is the point, not an error
        self.server.handle_error = lambda request, client_address: None
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts():
    """Stand-in hosts by deployment name, made on first use: ``hosts["blue"]``."""
    made: dict[str, StandInHost] = {}

    class Hosts(dict):
        def __missing__(self, name):
            made[name] = self[name] = StandInHost(name)
            return made[name]

    yield Hosts()
    for host in made.values():
        host.stop()


def eventually(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def free_port() -> int:
    """A port nothing listens on (a dead instance's)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_endpoint(folder: Path, instances: dict[str, list[str]], traffic: dict[str, int],
                   mirror_traffic: dict[str, int] | None = None, credentials: list[dict] | None = None,
                   **settings) -> None:
    """endpoint.json as the supervisor writes it (atomically); ``settings`` apply to every deployment."""
    spec = {
        "name": "test-ep", "auth_mode": "key",
        "credentials": credentials or [{"value": KEY, "expires_at": None}, {"value": OTHER_KEY, "expires_at": None}],
        "traffic": traffic, "mirror_traffic": mirror_traffic or {},
        "deployments": {name: {"instances": addresses, "max_concurrent_requests_per_instance": 1,
                               "request_timeout_ms": 5000, "max_body_bytes": 100_000, **settings}
                        for name, addresses in instances.items()},
    }
    partial = folder / "endpoint.json.partial"
    partial.write_text(json.dumps(spec))
    os.replace(partial, folder / "endpoint.json")


class RunningRouter:
    def __init__(self, folder: Path, process: subprocess.Popen, port: int):
        self.folder, self.process = folder, process
        self.url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()

    def score(self, headers=None, **kwargs) -> requests.Response:
        return self.session.post(self.url + "/score", json={"input_data": [[1, 2]]},
                                 headers={**AUTH, **(headers or {})}, timeout=10, **kwargs)

    def figures(self, window_seconds=60) -> dict:
        answer = self.session.get(self.url + "/.localml/figures", params={"window_seconds": window_seconds},
                                  headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def start_router(tmp_path):
    """Start the router on an endpoint folder (its endpoint.json written first); stopped after the test.

    Warnings are errors in it, as in the suite: our code raises none.
    """
    started = []

    def start(folder: Path = tmp_path) -> RunningRouter:
        process = subprocess.Popen([sys.executable, "-W", "error", "-m", "localml.serving.router", str(folder), "--port", "0"],
                                   cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        started.append(process)
        deadline = time.monotonic() + 15
        while not (folder / "router.json").exists():
            assert process.poll() is None, "the router exited at start"
            assert time.monotonic() < deadline, "the router wrote no router.json within 15 s"
            time.sleep(0.02)
        state = json.loads((folder / "router.json").read_text())
        assert state["pid"] == process.pid
        return RunningRouter(folder, process, state["port"])

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def blue_green(tmp_path, hosts, start_router):
    """A router over blue (all the traffic) and green (none)."""
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]}, {"blue": 100})
    return start_router()


def test_a_request_without_a_key_or_with_a_wrong_one_is_refused_with_401(blue_green, hosts):
    assert blue_green.score(headers={"Authorization": ""}).status_code == 401
    wrong = blue_green.score(headers={"Authorization": "Bearer not-a-key"})
    assert wrong.status_code == 401
    assert "key_auth_access_denied" in wrong.json()["message"]
    assert hosts["blue"].received == 0


def test_either_of_the_two_keys_is_valid(blue_green):
    for key in (KEY, OTHER_KEY):
        answer = blue_green.score(headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        assert answer.headers["azureml-model-deployment"] == "blue"


def test_an_expired_credential_is_refused_and_a_current_one_accepted(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 100}, credentials=[
        {"value": "old-token", "expires_at": time.time() - 1},
        {"value": "new-token", "expires_at": "2999-01-01T00:00:00+00:00"},
    ])
    router = start_router()
    assert router.score(headers={"Authorization": "Bearer old-token"}).status_code == 401
    assert router.score(headers={"Authorization": "Bearer new-token"}).status_code == 200


def test_an_80_20_traffic_split_lands_within_a_few_percent_over_500_requests(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]},
                   {"blue": 80, "green": 20})
    router = start_router()
    answered_by = [router.score().headers["azureml-model-deployment"] for _ in range(500)]
    # 20% of 500 is 100 with a standard deviation of about 9: 5 points either way is more than 5 sigma
    assert 75 <= answered_by.count("green") <= 125
    assert answered_by.count("blue") + answered_by.count("green") == 500
    assert hosts["green"].received == answered_by.count("green")


def test_a_20_percent_mirror_copies_about_a_fifth_of_the_requests_and_never_answers(tmp_path, hosts, start_router):
    # room for a few copies at once, so that none is refused as too many pending on a loaded machine
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]},
                   {"blue": 100}, mirror_traffic={"green": 20}, max_concurrent_requests_per_instance=4)
    router = start_router()
    answers = [router.score() for _ in range(500)]
    assert {(a.status_code, a.headers["azureml-model-deployment"], a.json()["deployment"]) for a in answers} == {
        (200, "blue", "blue")}
    assert hosts["blue"].received == 500
    # the copies are fire-and-forget: the last ones may still be on their way
    eventually(lambda: router.figures()["deployments"]["green"]["requests"] == hosts["green"].received,
               what="every copy the mirror received to be counted")
    assert 75 <= hosts["green"].received <= 125
    green = router.figures()["deployments"]["green"]
    assert green["mirrored"] == green["status"]["2xx"] == hosts["green"].received
    assert router.figures()["deployments"]["blue"]["mirrored"] == 0


def test_the_deployment_header_reaches_the_named_deployment_even_at_zero_traffic(blue_green, hosts):
    answer = blue_green.score(headers={"azureml-model-deployment": "green"})
    assert answer.status_code == 200
    assert answer.json() == {"deployment": "green"}
    assert answer.headers["azureml-model-deployment"] == "green"
    assert hosts["blue"].received == 0


def test_a_header_naming_an_unknown_deployment_is_answered_404(blue_green, hosts):
    answer = blue_green.score(headers={"azureml-model-deployment": "purple"})
    assert answer.status_code == 404
    assert "'purple' not found" in answer.json()["message"]
    assert hosts["blue"].received == 0


def test_with_no_traffic_and_no_header_the_answer_is_azures_404(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 0})
    router = start_router()
    answer = router.score()
    assert answer.status_code == 404
    assert answer.json()["message"].startswith("No valid deployments to route to")


def test_a_body_over_the_limit_is_answered_413_without_reaching_the_model(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 100}, max_body_bytes=1000)
    router = start_router()
    answer = router.session.post(router.url + "/score", data=b"x" * 5000, headers=AUTH, timeout=10)
    assert answer.status_code == 413
    assert "at most 1000 bytes" in answer.json()["message"]
    assert hosts["blue"].received == 0
    assert router.score().status_code == 200  # the same connection goes on


def test_a_request_that_is_not_http_is_answered_400_and_the_router_goes_on(blue_green):
    with socket.create_connection(("127.0.0.1", int(blue_green.url.rsplit(":", 1)[1]))) as connection:
        connection.sendall(b"HELLO\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert blue_green.score().status_code == 200


def test_a_request_over_the_timeout_is_answered_408_and_the_next_one_works(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 100}, request_timeout_ms=300)
    router = start_router()
    hosts["blue"].sleep = 1.0
    started = time.monotonic()
    assert router.score().status_code == 408
    assert time.monotonic() - started < 0.9
    hosts["blue"].sleep = 0.0
    answer = router.score()
    assert (answer.status_code, answer.json()) == (200, {"deployment": "blue"})


def test_requests_beyond_what_the_instances_can_take_are_answered_429(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 100}, request_timeout_ms=2500)
    router = start_router()
    hosts["blue"].sleep = 0.8
    statuses = []

    def send():
        statuses.append(requests.post(router.url + "/score", json={}, headers=AUTH, timeout=10).status_code)

    # one in flight and one waiting fill the deployment's 2 x 1 x 1 pending places; the third is refused at once
    senders = [threading.Thread(target=send) for _ in range(3)]
    for sender in senders:
        sender.start()
        time.sleep(0.1)
    for sender in senders:
        sender.join()
    assert sorted(statuses) == [200, 200, 429]


def test_a_request_beyond_the_instances_limit_waits_for_a_free_slot(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 100}, request_timeout_ms=1000)
    router = start_router()
    hosts["blue"].sleep = 0.3
    statuses = []
    first = threading.Thread(target=lambda: statuses.append(router.score().status_code))
    first.start()
    time.sleep(0.05)
    hosts["blue"].sleep = 0.0
    started = time.monotonic()
    statuses.append(requests.post(router.url + "/score", json={}, headers=AUTH, timeout=10).status_code)
    waited = time.monotonic() - started
    first.join()
    assert sorted(statuses) == [200, 200]
    assert waited >= 0.2  # it was not sent to the busy instance alongside the first


def test_concurrent_requests_go_to_the_least_busy_instance(tmp_path, start_router):
    first, second = StandInHost("blue"), StandInHost("blue")
    try:
        write_endpoint(tmp_path, {"blue": [first.address, second.address]}, {"blue": 100})
        router = start_router()
        first.sleep = second.sleep = 0.4
        statuses = []
        senders = [threading.Thread(target=lambda: statuses.append(
            requests.post(router.url + "/score", json={}, headers=AUTH, timeout=10).status_code)) for _ in range(2)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert statuses == [200, 200]
        assert (first.received, second.received) == (1, 1)
    finally:
        first.stop()
        second.stop()


def test_a_router_started_before_its_endpoint_file_refuses_then_serves_once_it_comes(tmp_path, hosts, start_router):
    router = start_router()
    assert router.score().status_code == 401  # no credential is known yet
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address]}, {"blue": 100})
    eventually(lambda: router.score().status_code == 200, what="the router to read the new endpoint file")


def test_a_dead_instance_is_skipped_for_a_live_one_of_the_same_deployment(tmp_path, hosts, start_router):
    dead = f"127.0.0.1:{free_port()}"
    write_endpoint(tmp_path, {"blue": [dead, hosts["blue"].address]}, {"blue": 100})
    router = start_router()
    assert [router.score().status_code for _ in range(10)] == [200] * 10
    assert hosts["blue"].received == 10


def test_a_deployment_whose_only_instance_is_dead_is_answered_502(tmp_path, start_router):
    write_endpoint(tmp_path, {"blue": [f"127.0.0.1:{free_port()}"]}, {"blue": 100})
    router = start_router()
    answer = router.score()
    assert answer.status_code == 502
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_a_model_error_is_passed_on_as_azures_424_with_the_models_status(blue_green, hosts):
    hosts["blue"].status = 500
    answer = blue_green.score()
    assert answer.status_code == 424
    assert answer.headers["ms-azureml-model-error-statuscode"] == "500"
    assert answer.json() == {"deployment": "blue"}


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_an_answer_in_chunks_or_ended_by_closing_is_passed_on_whole(blue_green, hosts, framing):
    hosts["blue"].framing = framing
    for _ in range(3):  # the connection a closing host ends is not reused
        answer = blue_green.score()
        assert (answer.status_code, answer.json()) == (200, {"deployment": "blue"})


def test_a_slow_mirror_never_delays_the_live_answer(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]},
                   {"blue": 100}, mirror_traffic={"green": 50})
    router = start_router()
    hosts["green"].sleep = 0.5
    for _ in range(20):
        started = time.monotonic()
        assert router.score().json() == {"deployment": "blue"}
        assert time.monotonic() - started < 0.4  # a wait for the mirror would take its 0.5 s
    assert hosts["green"].received >= 1


def test_the_router_starts_without_the_sdk_or_mlflow():
    # a router per endpoint: what it imports, every endpoint start pays
    loaded = subprocess.run([sys.executable, "-c", "import sys, localml.serving.router; print(' '.join(sys.modules))"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert [m for m in loaded if m.split(".")[0] in ("azure", "mlflow", "prefect", "pandas", "numpy")] == []


def test_a_rewritten_endpoint_file_takes_effect_without_a_restart(blue_green, tmp_path, hosts):
    assert blue_green.score().headers["azureml-model-deployment"] == "blue"
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]}, {"green": 100})
    eventually(lambda: blue_green.score().headers["azureml-model-deployment"] == "green",
               what="the new traffic to take effect")
    # an invalid file is logged and ignored: the last good one stays
    (tmp_path / "endpoint.json").write_text("{not json")
    time.sleep(0.1)
    assert blue_green.score().headers["azureml-model-deployment"] == "green"


def test_the_swagger_document_comes_from_the_deployment_taking_the_most_traffic(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]},
                   {"blue": 30, "green": 70})
    router = start_router()
    answer = router.session.get(router.url + "/swagger.json", headers=AUTH, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"swagger": "green"})


def test_the_liveness_route_answers_without_a_key(blue_green):
    assert requests.get(blue_green.url + "/", timeout=10).status_code == 200


def test_the_figures_count_exactly_what_was_sent(tmp_path, hosts, start_router):
    write_endpoint(tmp_path, {"blue": [hosts["blue"].address], "green": [hosts["green"].address]}, {"blue": 100},
                   request_timeout_ms=300)
    router = start_router()
    for _ in range(6):
        router.score()
    hosts["blue"].status = 500
    router.score()
    hosts["blue"].status = 400
    router.score()
    hosts["blue"].status, hosts["blue"].sleep = 200, 0.5
    router.score()  # 408
    hosts["blue"].sleep = 0.0
    router.score(headers={"azureml-model-deployment": "green"})
    router.score(headers={"Authorization": "Bearer wrong"})  # refused before any deployment: counted nowhere

    figures = router.figures(window_seconds=60)
    assert figures["window_seconds"] == 60
    blue = figures["deployments"]["blue"]
    assert {key: blue[key] for key in ("requests", "mirrored", "status", "failures", "failure_rate")} == {
        "requests": 9, "mirrored": 0, "status": {"2xx": 6, "4xx": 2, "5xx": 1}, "failures": 2,
        "failure_rate": round(2 / 9, 4)}
    assert 0 < blue["latency_ms"]["p50"] <= blue["latency_ms"]["p90"] <= blue["latency_ms"]["p99"]
    assert blue["latency_ms"]["p99"] >= 300  # the timed-out request
    assert figures["deployments"]["green"]["requests"] == 1
    time.sleep(0.3)
    assert router.figures(window_seconds=0.2)["deployments"]["blue"]["requests"] == 0
    refused = router.session.get(router.url + "/.localml/figures?window_seconds=soon", headers=AUTH, timeout=10)
    assert refused.status_code == 400
    assert "window_seconds must be a number" in refused.json()["message"]
