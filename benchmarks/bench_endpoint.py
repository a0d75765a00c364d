"""Online endpoint speed: localml's serving host against ``mlflow models serve``, on the same LightGBM MLflow model.

    python benchmarks/bench_endpoint.py [--requests 2000] [--seconds 10] [--concurrency 8]

Trains a small LightGBM classifier of diabetes (as the serving tests do), saves it as an MLflow model, then for
each target in turn (one server at a time, so they never share the machine's two cores): start it, warm it up,
send ``--requests`` one-row requests one after another over one keep-alive connection (p50, p99), then
``--concurrency`` threads, each with its own keep-alive connection, for ``--seconds`` (requests per second).
Every answer must be a 200 with the model's prediction for that row. Both targets get the same body (MLflow's
``dataframe_split``, which both take) and one worker each (the host's ``max_concurrent_requests`` = 1, Azure's
default; ``mlflow models serve`` starts one uvicorn worker).

A target is a name, how to start it, and the URL to POST: the router will be one more.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
HOST_SCRIPT = REPO / "localml" / "serving" / "host.py"
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
PATIENTS_CSV = REPO / "tests" / "data" / "patient-data-0.csv"
MLFLOW = Path(sys.executable).with_name("mlflow")
START_TIMEOUT = 120.0
WARM_UP_REQUESTS = 200


@dataclass
class Target:
    name: str
    #: starts the server for a model folder, in a scratch folder: its process and, once it answers, the URL to POST
    start: Callable[[Path, Path], tuple[subprocess.Popen, str]]


def wait_until(predicate: Callable[[], object], process: subprocess.Popen, what: str) -> object:
    deadline = time.monotonic() + START_TIMEOUT
    while not (value := predicate()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start (exit status {process.poll()})")
        time.sleep(0.1)
    return value


def start_host(model: Path, scratch: Path) -> tuple[subprocess.Popen, str]:
    state_file = scratch / "host-state.json"
    spec = {"endpoint": "bench", "deployment": "blue", "instance": 0, "port": 0, "model_kind": "mlflow",
            "model_dir": str(model), "code_dir": None, "scoring_script": None, "max_concurrent_requests": 1,
            "max_body_bytes": 100 << 20, "state_file": str(state_file)}
    (scratch / "host-spec.json").write_text(json.dumps(spec))
    process = subprocess.Popen([sys.executable, str(HOST_SCRIPT), str(scratch / "host-spec.json")], start_new_session=True)
    state = wait_until(lambda: state_file.exists() and json.loads(state_file.read_text()), process, "the host")
    return process, f"http://127.0.0.1:{state['port']}/score"


def start_mlflow_serve(model: Path, scratch: Path) -> tuple[subprocess.Popen, str]:
    port = 5000 + os.getpid() % 1000
    # mlflow runs uvicorn by name: it must be on PATH, as in an activated venv
    environment = {**os.environ, "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([str(MLFLOW), "models", "serve", "-m", str(model), "--env-manager", "local",
                                "-h", "127.0.0.1", "-p", str(port)], env=environment, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: answers_ping(port), process, "mlflow models serve")
    return process, f"http://127.0.0.1:{port}/invocations"


def answers_ping(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


TARGETS = [
    Target("mlflow models serve", start_mlflow_serve),
    Target("localml host", start_host),
]


class Client:
    """One keep-alive connection that POSTs bodies and checks each answer against the expected prediction."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.path = parts.path
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, body: bytes, expected: int) -> None:
        self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200 or json.loads(answer)["predictions"] != [expected]:
            raise SystemExit(f"{self.path} answered {response.status} {answer[:200]!r}, expected [{expected}]")


def sequential_latencies(url: str, requests: list[tuple[bytes, int]], count: int) -> list[float]:
    client = Client(url)
    for index in range(WARM_UP_REQUESTS):
        client.post(*requests[index % len(requests)])
    seconds = []
    for index in range(count):
        started = time.perf_counter()
        client.post(*requests[index % len(requests)])
        seconds.append(time.perf_counter() - started)
    return seconds


def throughput(url: str, requests: list[tuple[bytes, int]], concurrency: int, seconds: float) -> float:
    """Requests per second answered to ``concurrency`` threads, each with its own keep-alive connection."""
    counts = [0] * concurrency
    start, stop = threading.Barrier(concurrency + 1), threading.Event()

    def load(number: int) -> None:
        client = Client(url)
        start.wait()
        while not stop.is_set():
            client.post(*requests[(number + counts[number]) % len(requests)])
            counts[number] += 1

    threads = [threading.Thread(target=load, args=(number,)) for number in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def save_model(folder: Path):
    """The LightGBM MLflow model and one-row requests (dataframe_split) with the prediction each must get."""
    import lightgbm
    import mlflow.lightgbm
    import pandas as pd
    from mlflow.models import infer_signature

    warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column", UserWarning)
    training = pd.read_csv(DIABETES_CSV, nrows=2000)
    features, label = training.drop(columns=["PatientID", "Diabetic"]), training["Diabetic"]
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1).fit(features, label)
    mlflow.lightgbm.save_model(model, folder, signature=infer_signature(features, model.predict(features)),
                               pip_requirements=["lightgbm"])  # named, not inferred (seconds of a subprocess)
    patients = pd.read_csv(PATIENTS_CSV)
    return [(json.dumps({"dataframe_split": json.loads(patients.iloc[[row]].to_json(orient="split"))}).encode(), int(prediction))
            for row, prediction in enumerate(model.predict(patients))]


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)  # mlflow models serve runs uvicorn in a child: the whole group
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        requests = save_model(Path(scratch) / "model")
        for target in TARGETS:
            process, url = target.start(Path(scratch) / "model", Path(scratch))
            try:
                latencies = sorted(sequential_latencies(url, requests, args.requests))
                per_second = throughput(url, requests, args.concurrency, args.seconds)
            finally:
                stop(process)
            figures[target.name] = (statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000, per_second)
            print(f"{target.name}: p50={figures[target.name][0]:.2f} ms  p99={figures[target.name][1]:.2f} ms  "
                  f"{per_second:.0f} requests/s at concurrency {args.concurrency}", flush=True)
    baseline = figures[TARGETS[0].name]
    print(f"\n{args.requests} one-row requests one after another; {args.seconds:.0f} s at concurrency {args.concurrency}\n")
    print(f"| target | p50 | p99 | requests/s | p50 / {TARGETS[0].name} | throughput / {TARGETS[0].name} |")
    print("|---|---|---|---|---|---|")
    for name, (p50, p99, per_second) in figures.items():
        print(f"| {name} | {p50:.2f} ms | {p99:.2f} ms | {per_second:.0f} | {p50 / baseline[0]:.2f}x | {per_second / baseline[2]:.2f}x |")


if __name__ == "__main__":
    main()
