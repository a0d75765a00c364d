"""The ``deploy`` flow on localml: real endpoints on 127.0.0.1, real traffic from a client thread.

A first deploy serves on blue; a good model rolls out to green under steady traffic with no failed request; a
model that fails on a share of requests, and one that is much slower, are rolled back at the first step that
sees them; bad input is refused before anything is deployed. Windows are seconds long here, not minutes.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from prefect.settings import PREFECT_RESULTS_PERSIST_BY_DEFAULT, temporary_settings
from pydantic import ValidationError

from flows.deploy import DeployParameters, deploy
from tasks.rollout import ROLLOUT_TAG, RolloutBreached

REPO = Path(__file__).resolve().parents[2]
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
SAMPLE = REPO / "examples" / "data" / "diabetes-rai" / "test"
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness", "SerumInsulin", "BMI",
            "DiabetesPedigree", "Age"]
ENDPOINT = "diabetes-ep"
#: seconds-long windows, a gate that judges after a handful of requests
QUICK = {"plan": {"smoke_rows": 10, "mirror_percent": 50, "mirror_seconds": 3, "steps": [50, 100], "hold_seconds": 3,
                  "check_seconds": 0.5, "no_traffic_timeout_seconds": 20},
         "gate": {"min_requests": 5},
         # room for a stall of this busy machine: with Azure's default of 1, the router answers 429 past 2 pending
         "max_concurrent_requests_per_instance": 4}
#: a score.py of the registered MLflow model that answers its first call (the smoke test) and then misbehaves
MISBEHAVING_SCORE = """
    import glob, json, os, time
    import mlflow.pyfunc, pandas as pd

    def init():
        global model, calls
        (path,) = glob.glob(os.path.join(os.environ["AZUREML_MODEL_DIR"], "**", "MLmodel"), recursive=True)
        model, calls = mlflow.pyfunc.load_model(os.path.dirname(path)), 0

    def run(raw_data):
        global calls
        calls += 1
        request = json.loads(raw_data)["input_data"]
        if calls > 1:
            {misbehaviour}
        return model.predict(pd.DataFrame(request["data"], columns=request["columns"])).tolist()
"""
FAILING = "if calls % 2 == 0: raise RuntimeError('this model fails on every other request')"
SLOW = "time.sleep(0.4)"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A small LightGBM MLflow model of the diabetes sample, with its signature."""
    import lightgbm
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    data = pd.read_csv(DIABETES_CSV, nrows=2000)
    features = data[FEATURES].astype("float64")
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, verbose=-1).fit(features, data["Diabetic"])
    folder = tmp_path_factory.mktemp("mlflow") / "model"
    mlflow.lightgbm.save_model(model, str(folder), signature=infer_signature(features, model.predict(features)),
                               pip_requirements=["lightgbm"])
    return folder


@pytest.fixture
def workspace(ml_client, model_folder):
    """A workspace with two versions of ``diabetes-baseline`` (the same model); its endpoints stopped afterwards."""
    from azure.ai.ml.entities import Model

    for version in ("1", "2"):
        ml_client.models.create_or_update(Model(name="diabetes-baseline", version=version, path=str(model_folder), type="mlflow_model"))
    yield ml_client
    for endpoint in ml_client.online_endpoints.list():
        ml_client.online_endpoints.begin_delete(endpoint.name).result()


def params(model: str = "azureml:diabetes-baseline:1", **changes) -> DeployParameters:
    return DeployParameters(**{"model": model, "endpoint_name": ENDPOINT, "sample_data": str(SAMPLE), **QUICK, **changes})


class Client(threading.Thread):
    """Steady one-row requests to the endpoint, as a user's application sends them; counts the statuses it sees."""

    def __init__(self, ml_client, endpoint_name: str = ENDPOINT):
        super().__init__(daemon=True)
        endpoint = ml_client.online_endpoints.get(endpoint_name)
        self.url, self.key = endpoint.scoring_uri, ml_client.online_endpoints.get_keys(endpoint_name).primary_key
        rows = pd.read_csv(SAMPLE / "diabetes-test.csv")[FEATURES].head(50)
        self.bodies = [json.dumps({"input_data": {"columns": FEATURES, "index": [0], "data": [row]}}).encode()
                       for row in rows.values.tolist()]
        self.statuses: Counter = Counter()
        self.running = True

    def run(self):
        sent = 0
        while self.running:
            request = urllib.request.Request(self.url, data=self.bodies[sent % len(self.bodies)], headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    self.statuses[answer.status] += 1
            except urllib.error.HTTPError as error:
                with error:  # it holds the connection
                    self.statuses[error.code] += 1
            sent += 1
            time.sleep(0.03)

    def stop(self) -> Counter:
        self.running = False
        self.join(timeout=15)
        return self.statuses


def write_score(tmp_path: Path, misbehaviour: str) -> dict:
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(textwrap.dedent(MISBEHAVING_SCORE).replace("{misbehaviour}", misbehaviour))
    return {"code_path": str(code), "scoring_script": "score.py", "environment": "AzureML-sklearn-1.5@latest"}


def test_the_first_deploy_serves_on_blue_and_a_re_run_with_the_same_model_does_nothing(workspace):
    first = deploy(params())
    assert (first.outcome, first.deployment) == ("deployed", "blue")
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"blue": 100}
    assert endpoint.tags["model.blue"] == "azureml:diabetes-baseline:1"
    served = workspace.models.get("diabetes-baseline", version="1").tags
    assert (served["serving.endpoint"], served["serving.deployment"]) == (ENDPOINT, "blue")

    again = deploy(params())
    assert (again.outcome, again.deployment, again.steps) == ("unchanged", "blue", [])
    assert [d.name for d in workspace.online_deployments.list(ENDPOINT)] == ["blue"]


@pytest.mark.slow  # (CI runs it) a whole rollout under live traffic: about 30 s; the e2e drift loop rolls out too
def test_a_good_model_rolls_out_step_by_step_while_the_client_sees_no_failed_request(workspace):
    deploy(params())
    client = Client(workspace)
    client.start()
    try:
        result = deploy(params("azureml:diabetes-baseline:2"))
    finally:
        statuses = client.stop()
    assert [step.step for step in result.steps] == ["smoke test", "mirror 50%", "traffic 50%", "traffic 100%"]
    assert all(step.verdict == "passed" for step in result.steps), [s.reason for s in result.steps]
    assert result.steps[1].new.mirrored > 0 and result.steps[2].new.requests >= 5
    assert (result.outcome, result.deployment, result.previous) == ("rolled out", "green", "blue")
    assert set(statuses) == {200} and sum(statuses.values()) > 50, statuses  # zero failed requests throughout

    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"green": 100} and not endpoint.mirror_traffic
    assert [d.name for d in workspace.online_deployments.list(ENDPOINT)] == ["green"]
    assert endpoint.tags["model.green"] == "azureml:diabetes-baseline:2" and "model.blue" not in endpoint.tags
    assert ROLLOUT_TAG not in endpoint.tags
    assert workspace.models.get("diabetes-baseline", version="2").tags["serving.deployment"] == "green"


@pytest.mark.slow  # (CI runs them) each a rollout and a rollback: about 15 s
@pytest.mark.parametrize("misbehaviour, settings, step, reason", [
    (FAILING, {}, "mirror 50%", "failure rate"),
    # threads enough for its mirrored share: slow, not saturated (saturated, its 429s would trip the failure rate)
    (SLOW, {"max_concurrent_requests_per_instance": 16}, "mirror 50%", "p95 latency"),
], ids=["fails on every other request", "answers 0.4 s late"])
def test_a_bad_model_is_rolled_back_at_the_first_step_that_sees_it(workspace, tmp_path, misbehaviour, settings, step, reason):
    deploy(params())
    client = Client(workspace)
    client.start()
    try:
        with pytest.raises(RolloutBreached, match=f"Rolled back at '{step}': green {reason}"):
            deploy(params("azureml:diabetes-baseline:2", **settings, **write_score(tmp_path, misbehaviour)))
    finally:
        statuses = client.stop()
    assert set(statuses) == {200}, statuses  # a mirror's answers never reach the client
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"blue": 100} and not endpoint.mirror_traffic
    assert [d.name for d in workspace.online_deployments.list(ENDPOINT)] == ["blue"]
    assert ROLLOUT_TAG not in endpoint.tags and endpoint.tags["model.blue"] == "azureml:diabetes-baseline:1"


@pytest.mark.slow
def test_a_model_that_fails_live_traffic_is_rolled_back_with_the_client_s_failures_within_its_share(workspace, tmp_path):
    deploy(params())
    client = Client(workspace)
    client.start()
    try:
        with pytest.raises(RolloutBreached, match="Rolled back at 'traffic 50%': green failure rate"):
            deploy(params("azureml:diabetes-baseline:2", plan={**QUICK["plan"], "mirror_percent": 0},
                          failed_deployment="keep", **write_score(tmp_path, FAILING)))
    finally:
        statuses = client.stop()
    failed = sum(count for status, count in statuses.items() if status != 200)
    # green took half the traffic and failed every other request it got: at most a quarter, plus the gate's delay
    assert 0 < failed <= 0.25 * sum(statuses.values()) + 5, statuses
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic.get("blue") == 100 and not endpoint.traffic.get("green")
    assert sorted(d.name for d in workspace.online_deployments.list(ENDPOINT)) == ["blue", "green"]  # kept at 0%


@pytest.mark.parametrize("change, message", [
    ({"plan": {"steps": [10, 50]}}, "must end at 100"),
    ({"plan": {"steps": [50, 10, 100]}}, "must increase"),
    ({"plan": {"mirror_percent": 60}}, "less than or equal to 50"),
    ({"endpoint_name": "1-endpoint"}, "Online endpoint"),
    ({"model": "diabetes-baseline"}, "azureml:"),
    ({"scoring_script": "score.py"}, "needs code_path and an environment"),
])
def test_a_bad_plan_or_name_is_refused_when_the_parameters_are_built(change, message):
    started = time.perf_counter()
    with pytest.raises(ValidationError, match=message):
        DeployParameters(**change)
    assert time.perf_counter() - started < 1


def test_an_unknown_model_or_one_without_a_signature_is_refused_and_the_endpoint_is_untouched(workspace, tmp_path):
    from azure.ai.ml.entities import Model

    deploy(params())
    with pytest.raises(Exception, match="diabetes-baseline.*9"):
        deploy(params("azureml:diabetes-baseline:9"))
    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    (unsigned / "weights.bin").write_text("w")
    workspace.models.create_or_update(Model(name="unsigned", path=str(unsigned), type="custom_model"))
    with pytest.raises(ValueError, match="not an MLflow model"):
        deploy(params("azureml:unsigned:1"))
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"blue": 100} and ROLLOUT_TAG not in endpoint.tags
    assert [d.name for d in workspace.online_deployments.list(ENDPOINT)] == ["blue"]


@pytest.mark.slow
def test_a_rollout_killed_mid_step_is_rolled_back_by_the_next_run_and_a_second_run_meanwhile_is_refused(workspace, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    deploy(params())
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # `amlflows run` with its own Prefect server
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"))
    plan = {**QUICK["plan"], "mirror_percent": 0, "hold_seconds": 300}
    killed = subprocess.Popen(
        [sys.executable, "-m", "amlflows.cli", "run", "deploy", "--model", "azureml:diabetes-baseline:2", "--endpoint-name",
         ENDPOINT, "--sample-data", str(SAMPLE), "--plan", json.dumps(plan)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while workspace.online_endpoints.get(ENDPOINT).traffic.get("green") != 50:
            assert killed.poll() is None, killed.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the rollout never reached its 50% step"
            time.sleep(0.5)

        with pytest.raises(RuntimeError, match="Another deploy run .* is rolling azureml:diabetes-baseline:2 out"):
            deploy(params("azureml:diabetes-baseline:2"))
        assert workspace.online_endpoints.get(ENDPOINT).traffic == {"blue": 50, "green": 50}  # left to its run
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    split = workspace.online_endpoints.get(ENDPOINT)
    assert split.traffic == {"blue": 50, "green": 50} and ROLLOUT_TAG in split.tags  # what the crash left

    # with results persisted (a setting a user may have), a task called twice with the same arguments in a run is
    # cached: this run clears the rollout tag twice (after the rollback, after the rollout), and both must happen
    with temporary_settings({PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
        result = deploy(params("azureml:diabetes-baseline:2"))
    assert result.interrupted_rollout.startswith("a rollout of azureml:diabetes-baseline:2 to green")
    assert "rolled back to traffic {'blue': 100}" in result.interrupted_rollout
    assert (result.outcome, result.deployment) == ("rolled out", "green")
    endpoint = workspace.online_endpoints.get(ENDPOINT)
    assert endpoint.traffic == {"green": 100} and ROLLOUT_TAG not in endpoint.tags
