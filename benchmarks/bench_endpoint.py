"""Online endpoint speed: localml's endpoint (and its serving host alone) against ``mlflow models serve``, on the
same MLflow models.

    python benchmarks/bench_endpoint.py [--requests 2000] [--seconds 10] [--concurrency 8]

Two models: a small LightGBM classifier of diabetes (as the serving tests train it), saved as an MLflow model, and
the best model of a small real localml AutoML classification job on the diabetes sample (LightGBM only, 2 trials),
as the baseline flow makes it. For each model, each target in turn (one server at a time, so they never share the
machine's two cores): start it, warm it up, send ``--requests`` one-row requests one after another over one
keep-alive connection (p50, p99), then ``--concurrency`` threads, each with its own keep-alive connection, for
``--seconds`` (requests per second). Every answer must be a 200 with the model's own prediction for that row
(the patients of ``tests/data/patient-data-0.csv``). Every target gets the same body (MLflow's
``dataframe_split``, which all take) and one process: ``mlflow models serve`` starts one uvicorn worker, which
predicts on asyncio's default pool of threads (6 on 2 cores); the localml targets have ``instance_count`` = 1 and
``max_concurrent_requests_per_instance`` = 4 (``SCORING_THREADS``), not Azure's default of 1: Azure, and so the
router, answer 429 at once beyond 2 x that x instance_count pending requests, so 4 is the least that admits 8
concurrent callers; the host alone gets the same 4 threads, so host against endpoint is the router's cost alone.

The targets: ``mlflow models serve``; the localml host alone (started as the supervisor starts it); and the
localml endpoint as a user gets it: a ``LocalMLClient`` on a scratch root, a ``ManagedOnlineEndpoint`` with key
auth, a ``ManagedOnlineDeployment`` of the model folder taking all the traffic, requests POSTed to its
``scoring_uri`` with the key (router, then host).
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
DIABETES_DIR = REPO / "examples" / "data" / "diabetes"  # an MLTable folder, as AutoML takes it
PATIENTS_CSV = REPO / "tests" / "data" / "patient-data-0.csv"  # exactly the models' feature columns
MLFLOW = Path(sys.executable).with_name("mlflow")
START_TIMEOUT = 120.0
WARM_UP_REQUESTS = 200
#: the deployment's max_concurrent_requests_per_instance: with 1 (Azure's default) the router, as Azure, admits only
#: 2 pending requests and answers the other 6 of 8 concurrent callers 429 (see the module's docstring)
SCORING_THREADS = 4
AUTOML_TIMEOUT = 2 * 60 + 180.0  # the job's own 2 minutes, and time to start and finish on a busy machine


@dataclass
class Server:
    """A started target: where to POST, the headers it needs besides the body's type, and how to stop it."""
    url: str
    headers: dict[str, str]
    stop: Callable[[], None]


@dataclass
class Target:
    name: str
    #: starts the server for a model folder, in its own scratch folder; returns once it answers
    start: Callable[[Path, Path], Server]


def wait_until(predicate: Callable[[], object], process: subprocess.Popen, what: str) -> object:
    deadline = time.monotonic() + START_TIMEOUT
    while not (value := predicate()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start (exit status {process.poll()})")
        time.sleep(0.1)
    return value


def start_host(model: Path, scratch: Path) -> Server:
    state_file = scratch / "host-state.json"
    spec = {"endpoint": "bench", "deployment": "blue", "instance": 0, "port": 0, "model_kind": "mlflow",
            "model_dir": str(model), "code_dir": None, "scoring_script": None, "max_concurrent_requests": SCORING_THREADS,
            "max_body_bytes": 100 << 20, "state_file": str(state_file)}
    (scratch / "host-spec.json").write_text(json.dumps(spec))
    process = subprocess.Popen([sys.executable, str(HOST_SCRIPT), str(scratch / "host-spec.json")], start_new_session=True)
    state = wait_until(lambda: state_file.exists() and json.loads(state_file.read_text()), process, "the host")
    return Server(f"http://127.0.0.1:{state['port']}/score", {}, lambda: stop(process))


def start_mlflow_serve(model: Path, scratch: Path) -> Server:
    port = 5000 + os.getpid() % 1000
    # mlflow runs uvicorn by name: it must be on PATH, as in an activated venv
    environment = {**os.environ, "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen([str(MLFLOW), "models", "serve", "-m", str(model), "--env-manager", "local",
                                "-h", "127.0.0.1", "-p", str(port)], env=environment, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: answers_ping(port), process, "mlflow models serve")
    return Server(f"http://127.0.0.1:{port}/invocations", {}, lambda: stop(process))


def start_endpoint(model: Path, scratch: Path) -> Server:
    """The endpoint as a user makes it, through the SDK's entities; ``.result()`` waits until its host is ready."""
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint, Model, OnlineRequestSettings

    from localml import LocalMLClient

    client = LocalMLClient(scratch / "ws")
    endpoint = ManagedOnlineEndpoint(name="bench-ep", auth_mode="key")
    client.begin_create_or_update(endpoint).result()
    try:
        deployment = ManagedOnlineDeployment(name="blue", endpoint_name="bench-ep", instance_type="Standard_D2as_v4",
                                             model=Model(path=str(model), type="mlflow_model"), instance_count=1,
                                             request_settings=OnlineRequestSettings(
                                                 max_concurrent_requests_per_instance=SCORING_THREADS))
        client.online_deployments.begin_create_or_update(deployment).result(timeout=START_TIMEOUT)
        endpoint.traffic = {"blue": 100}
        client.begin_create_or_update(endpoint).result()
        endpoint = client.online_endpoints.get("bench-ep")
        key = client.online_endpoints.get_keys("bench-ep").primary_key
    except BaseException:
        client.online_endpoints.begin_delete("bench-ep").result()
        raise
    # begin_delete stops the router and the host, and forgets the endpoint
    return Server(endpoint.scoring_uri, {"Authorization": f"Bearer {key}"},
                  lambda: client.online_endpoints.begin_delete("bench-ep").result())


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
    Target("localml endpoint", start_endpoint),
]


class Client:
    """One keep-alive connection that POSTs bodies and checks each answer against the expected prediction."""

    def __init__(self, server: Server):
        parts = urllib.parse.urlsplit(server.url)
        self.path = parts.path
        self.headers = {"Content-Type": "application/json", **server.headers}
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, body: bytes, expected: int) -> None:
        self.connection.request("POST", self.path, body, self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200 or json.loads(answer)["predictions"] != [expected]:
            raise SystemExit(f"{self.path} answered {response.status} {answer[:200]!r}, expected [{expected}]")


def sequential_latencies(server: Server, requests: list[tuple[bytes, int]], count: int) -> list[float]:
    client = Client(server)
    for index in range(WARM_UP_REQUESTS):
        client.post(*requests[index % len(requests)])
    seconds = []
    for index in range(count):
        started = time.perf_counter()
        client.post(*requests[index % len(requests)])
        seconds.append(time.perf_counter() - started)
    return seconds


def throughput(server: Server, requests: list[tuple[bytes, int]], concurrency: int, seconds: float) -> float:
    """Requests per second answered to ``concurrency`` threads, each with its own keep-alive connection."""
    counts = [0] * concurrency
    start, stop = threading.Barrier(concurrency + 1), threading.Event()
    failures: list[BaseException] = []

    def load(number: int) -> None:
        client = Client(server)
        start.wait()
        try:
            while not stop.is_set():
                client.post(*requests[(number + counts[number]) % len(requests)])
                counts[number] += 1
        except BaseException as failure:  # SystemExit in a thread ends it silently: the figure would be of fewer threads
            failures.append(failure)
            stop.set()

    threads = [threading.Thread(target=load, args=(number,)) for number in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} of {concurrency} threads failed; the first: {failures[0]}")
    return sum(counts) / (time.perf_counter() - began)


def save_lightgbm_model(folder: Path) -> Path:
    """The plain LightGBM MLflow model: 30 trees of diabetes, saved with its signature."""
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
    return folder


def train_automl_model(scratch: Path) -> Path:
    """The best model of a small real AutoML job on the diabetes MLTable, as the baseline flow asks for one (AUC,
    30% held out), cut to 2 LightGBM trials: its folder in the job's outputs."""
    from azure.ai.ml import Input, automl

    from localml import LocalMLClient

    client = LocalMLClient(scratch / "automl-ws")
    job = automl.classification(training_data=Input(type="mltable", path=str(DIABETES_DIR)),
                                target_column_name="Diabetic", primary_metric="AUC_weighted", test_data_size=0.3,
                                experiment_name="bench-endpoint")
    job.set_limits(timeout_minutes=2, max_trials=2)
    job.set_training(allowed_training_algorithms=["LightGBM"])
    name = client.jobs.create_or_update(job).name
    try:
        deadline = time.monotonic() + AUTOML_TIMEOUT
        while (status := client.jobs.get(name).status) not in ("Completed", "Failed", "Canceled"):
            if time.monotonic() > deadline:
                raise SystemExit(f"AutoML job {name} did not end in {AUTOML_TIMEOUT:.0f} s")
            time.sleep(1)  # polled slowly: the job needs the cores more than this process does
    except BaseException:
        client.jobs.begin_cancel(name)  # nothing left running behind an interrupted benchmark
        raise
    if status != "Completed":
        raise SystemExit(f"AutoML job {name} ended {status}: {client.jobs.get(name).properties.get('localml.error')}")
    print(f"AutoML job {name}: best {client.jobs.get(name).properties.get('best_algorithm')}", flush=True)
    return Path(client._workspace.resolve_uri(f"azureml://jobs/{name}/outputs/best_model"))


def one_row_requests(model: Path) -> list[tuple[bytes, int]]:
    """One-row requests (dataframe_split) of the patients, each with the prediction the model itself makes for it."""
    import mlflow.pyfunc
    import pandas as pd

    patients = pd.read_csv(PATIENTS_CSV)
    predictions = mlflow.pyfunc.load_model(str(model)).predict(patients)
    return [(json.dumps({"dataframe_split": json.loads(patients.iloc[[row]].to_json(orient="split"))}).encode(), int(prediction))
            for row, prediction in enumerate(list(predictions))]


MODELS: dict[str, Callable[[Path], Path]] = {
    "LightGBM (30 trees)": lambda scratch: save_lightgbm_model(scratch / "lightgbm-model"),
    "AutoML best model": train_automl_model,
}


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)  # mlflow models serve runs uvicorn in a child: the whole group
    process.wait(timeout=30)


def measure(target: Target, model: Path, scratch: Path, requests: list[tuple[bytes, int]],
            args: argparse.Namespace) -> tuple[float, float, float]:
    """p50 and p99 (ms) one after another, then requests per second at ``--concurrency``; the target is stopped after."""
    scratch.mkdir()
    server = target.start(model, scratch)
    try:
        latencies = sorted(sequential_latencies(server, requests, args.requests))
        per_second = throughput(server, requests, args.concurrency, args.seconds)
    finally:
        server.stop()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000, per_second


def print_table(model: str, figures: dict[str, tuple[float, float, float]]) -> None:
    baseline = figures[TARGETS[0].name]
    print(f"\n**{model}**\n")
    print(f"| target | p50 | p99 | requests/s | p50 / {TARGETS[0].name} | throughput / {TARGETS[0].name} |")
    print("|---|---|---|---|---|---|")
    for name, (p50, p99, per_second) in figures.items():
        print(f"| {name} | {p50:.2f} ms | {p99:.2f} ms | {per_second:.0f} | {p50 / baseline[0]:.2f}x | {per_second / baseline[2]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    figures: dict[str, dict[str, tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        # every model first: the AutoML job must not share the cores with a measurement
        models = {name: make(Path(scratch)) for name, make in MODELS.items()}
        for number, (model_name, model) in enumerate(models.items()):
            requests = one_row_requests(model)
            figures[model_name] = {}
            for target in TARGETS:
                figure = measure(target, model, Path(scratch) / f"{number}-{target.name.replace(' ', '-')}", requests, args)
                figures[model_name][target.name] = figure
                print(f"{model_name}, {target.name}: p50={figure[0]:.2f} ms  p99={figure[1]:.2f} ms  "
                      f"{figure[2]:.0f} requests/s at concurrency {args.concurrency}", flush=True)
    print(f"\n{args.requests} one-row requests one after another; {args.seconds:.0f} s at concurrency {args.concurrency}")
    for model_name, by_target in figures.items():
        print_table(model_name, by_target)


if __name__ == "__main__":
    main()
