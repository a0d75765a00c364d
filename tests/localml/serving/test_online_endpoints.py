"""Online endpoints on localml, through the SDK's entities: real routers and hosts, real ports, real kill -9. No mocks.

Each test's endpoints are stopped at its end (the ``serving`` fixture), so no process outlives a test. MLflow
deployments serve a small scikit-learn model trained once per module on the diabetes sample (``tests/data``'s patient
rows have no label: they are what the tests score). Where the model does not matter, a deployment runs a score.py of
the standard library only (``deploy_greeter``): its host is up in a fraction of a second, an MLflow one in seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request

import psutil
import pytest
import yaml
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import (
    CodeConfiguration,
    EndpointAuthKeys,
    EndpointAuthToken,
    Environment,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestTimeoutError

from localml.serving.records import ENDPOINT_KIND
from localml.serving.supervisor import Supervisor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TRAINING_DATA = os.path.join(REPO, "examples", "data", "diabetes", "diabetes.csv")
PATIENTS = os.path.join(REPO, "tests", "data", "patient-data-0.csv")
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness", "SerumInsulin", "BMI", "DiabetesPedigree", "Age"]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
READY_TIMEOUT = 120  # a host imports MLflow and scikit-learn: seconds, more on a loaded 2-core machine

ECHO_SCORE = """
    import json, os, six
    def init():
        global greeting
        greeting = os.environ.get("GREETING", "hello")
    def run(raw_data):
        rows = json.loads(raw_data)["input_data"]["data"]
        return {"greeting": greeting, "rows": len(rows), "six": six.__version__}
"""
SLEEPY_SCORE = """
    import json, os, time
    def init():
        pass
    def run(raw_data):
        time.sleep(json.loads(raw_data).get("sleep", 0))
        return {"greeting": os.environ["GREETING"]}
"""
FAILING_SCORE = """
    def init():
        raise RuntimeError("the model file is missing: cannot load weights.bin")
    def run(raw_data):
        return []
"""


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small MLflow model (logistic regression on the diabetes sample) saved as a local folder, as the issue's ./model."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    data = pd.read_csv(TRAINING_DATA).head(500)
    features = data[FEATURES].astype("float64")
    model = LogisticRegression(max_iter=500).fit(features, data["Diabetic"])
    folder = tmp_path_factory.mktemp("mlflow") / "model"
    mlflow.sklearn.save_model(model, str(folder), serialization_format="cloudpickle",
                              signature=infer_signature(features, model.predict(features)))
    return folder


@pytest.fixture
def request_file(tmp_path):
    """Three patients in Azure's MLflow request format, as the issue's sample-data.json."""
    import pandas as pd

    rows = pd.read_csv(PATIENTS).head(3).astype("float64")
    path = tmp_path / "sample-data.json"
    path.write_text(json.dumps({"input_data": {"columns": FEATURES, "index": [0, 1, 2], "data": rows[FEATURES].values.tolist()}}))
    return str(path)


@pytest.fixture
def serving(ml_client):
    """The test's client; every endpoint's processes are stopped at the end, whatever the test left."""
    yield ml_client
    supervisor = Supervisor(ml_client._workspace)
    for row in ml_client._workspace.catalog.list_resources(ENDPOINT_KIND):
        supervisor.stop(row["name"])
    _, alive = psutil.wait_procs(serving_processes(ml_client), timeout=10)  # a provisioner may be exiting on its own
    assert alive == []


def serving_processes(ml_client) -> list[psutil.Process]:
    """The routers, hosts and provisioners of this test's workspace: their command lines name a path inside it."""
    root = str(ml_client.root)
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(root in part for part in process.info["cmdline"] or []) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            pass
    return found


def hosts(ml_client) -> list[psutil.Process]:
    return [p for p in serving_processes(ml_client) if "host.py" in " ".join(p.cmdline())]


def routers(ml_client) -> list[psutil.Process]:
    return [p for p in serving_processes(ml_client) if "localml.serving.router" in " ".join(p.cmdline())]


def create_endpoint(ml_client, name="diabetes-ep", **fields) -> ManagedOnlineEndpoint:
    endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key", **fields)
    ml_client.begin_create_or_update(endpoint).result()
    return endpoint


def deploy(ml_client, name, endpoint="diabetes-ep", **fields) -> ManagedOnlineDeployment:
    deployment = ManagedOnlineDeployment(name=name, endpoint_name=endpoint, instance_type="Standard_D2as_v4", **{"instance_count": 1, **fields})
    return ml_client.online_deployments.begin_create_or_update(deployment).result(timeout=READY_TIMEOUT)


def post(url, body: bytes, key: str | None, deployment: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as answer:
        with answer:  # it holds the connection
            return answer.code, answer.read()


def deploy_greeter(ml_client, name, tmp_path, **fields) -> ManagedOnlineDeployment:
    """A deployment whose score.py answers its GREETING: only the standard library, so its host is up at once."""
    code = CodeConfiguration(code=str(code_folder(tmp_path, SLEEPY_SCORE, "greeter")), scoring_script="score.py")
    return deploy(ml_client, name, code_configuration=code, environment="AzureML-sklearn-1.5@latest",
                  **{"environment_variables": {"GREETING": name}, **fields})


def greeting_endpoint(ml_client, tmp_path) -> ManagedOnlineEndpoint:
    """diabetes-ep with the greeter deployed as blue, taking all of its traffic."""
    endpoint = create_endpoint(ml_client)
    deploy_greeter(ml_client, "blue", tmp_path)
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()
    return endpoint


def code_folder(tmp_path, script: str, name: str = "src"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(script).lstrip())
    return folder


# -- the issue's code ------------------------------------------------------------------------------
def test_the_issues_code_runs_unchanged_on_a_local_mlflow_model_folder(serving, model_dir, request_file, monkeypatch):
    ml_client = serving
    monkeypatch.chdir(model_dir.parent)  # the issue's code names ./model

    endpoint = ManagedOnlineEndpoint(name="diabetes-ep", auth_mode="key")
    ml_client.begin_create_or_update(endpoint).result()
    blue = ManagedOnlineDeployment(name="blue", endpoint_name="diabetes-ep",
                                   model=Model(path="./model", type=AssetTypes.MLFLOW_MODEL),
                                   instance_type="Standard_D2as_v4", instance_count=1)
    ml_client.online_deployments.begin_create_or_update(blue).result()
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()
    answer = ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", deployment_name="blue", request_file=request_file)

    predictions = json.loads(answer)
    assert isinstance(predictions, list) and len(predictions) == 3 and set(predictions) <= {0, 1}
    deployed = ml_client.online_deployments.get("blue", "diabetes-ep")
    assert deployed.provisioning_state == "Succeeded"
    assert deployed.model.startswith("azureml:") and deployed.model.endswith(":1")  # registered anonymously, as on Azure
    # without deployment_name the traffic split sends it to blue too
    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", request_file=request_file)) == predictions


def test_a_registered_model_deploys_by_reference_and_get_and_list_show_traffic_and_scoring_uri(serving, model_dir, request_file, tmp_path):
    ml_client = serving
    registered = ml_client.models.create_or_update(Model(name="diabetes-model", path=str(model_dir), type=AssetTypes.MLFLOW_MODEL))
    endpoint = create_endpoint(ml_client)
    deploy(ml_client, "blue", model=f"azureml:{registered.name}:{registered.version}")
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()

    got = ml_client.online_endpoints.get("diabetes-ep")
    assert got.traffic == {"blue": 100} and got.provisioning_state == "Succeeded"
    assert got.scoring_uri.startswith("http://127.0.0.1:") and got.scoring_uri.endswith("/score")
    assert got.openapi_uri == got.scoring_uri.removesuffix("score") + "swagger.json"
    [listed] = ml_client.online_endpoints.list()
    assert (listed.name, listed.traffic, listed.scoring_uri) == ("diabetes-ep", {"blue": 100}, got.scoring_uri)
    [deployment] = ml_client.online_deployments.list("diabetes-ep")
    assert (deployment.name, deployment.model, deployment.instance_count) == ("blue", "azureml:diabetes-model:1", 1)
    assert deployment.request_settings.request_timeout_ms == 5000 and deployment.readiness_probe.failure_threshold == 30
    key = ml_client.online_endpoints.get_keys("diabetes-ep").primary_key
    status, body = post(got.scoring_uri, open(request_file, "rb").read(), key)
    assert status == 200 and len(json.loads(body)) == 3

    # a request the model cannot take: Azure's 424 wrapping the model's 400, raised as Azure's SDK raises it, with the reason
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"input_data": {"columns": ["Nope"], "index": [0], "data": [[1.0]]}}))
    with pytest.raises(HttpResponseError) as refused:
        ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", request_file=str(bad))
    assert refused.value.status_code == 424 and "Missing column(s) Pregnancies, PlasmaGlucose" in str(refused.value)
    with pytest.raises(ValidationException, match="Deployment name green not found for this endpoint .*its deployments: blue"):
        ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", deployment_name="green", request_file=request_file)
    with pytest.raises(ResourceNotFoundError, match="Online endpoint 'nowhere' was not found"):
        ml_client.online_endpoints.invoke(endpoint_name="nowhere", request_file=request_file)
    figures = ml_client.online_deployments.get_live_figures("blue", "diabetes-ep", window_seconds=60)
    assert figures["window_seconds"] == 60 and figures["requests"] == 2 and figures["status"]["2xx"] == 1 and figures["status"]["4xx"] == 1


def test_begin_delete_stops_every_process_and_forgets_the_endpoint(serving, tmp_path):
    ml_client = serving
    create_endpoint(ml_client)
    deploy_greeter(ml_client, "blue", tmp_path, instance_count=2)
    assert (len(routers(ml_client)), len(hosts(ml_client))) == (1, 2)

    ml_client.online_endpoints.begin_delete(name="diabetes-ep").result()

    assert serving_processes(ml_client) == []
    with pytest.raises(ResourceNotFoundError, match="diabetes-ep"):
        ml_client.online_endpoints.get("diabetes-ep")
    assert not (ml_client.root / "endpoints" / "diabetes-ep").exists()


# -- Azure's rules, before anything starts -------------------------------------------------------------
REFUSED_TRAFFIC = [
    ({"blue": 80}, {}, r"traffic must sum to 100 \(or 0 for none\), and \{blue: 80\} sums to 80"),
    ({"blue": 50, "orange": 50}, {}, r"has no deployment 'orange' .*\(its deployments: blue, green\)"),
    ({"blue": 100}, {"green": 60}, "mirror traffic to 'green' is 60%, and Azure mirrors at most 50%"),
    ({"blue": 100}, {"blue": 10}, "'blue' takes 100% of the live traffic, so it cannot take mirror traffic too"),
    ({"blue": 100}, {"green": 10, "blue": 10}, "mirror traffic goes to one deployment"),
]


def test_traffic_azure_refuses_is_refused_before_the_router_hears_of_it(serving, tmp_path):
    ml_client = serving
    endpoint = create_endpoint(ml_client)
    for name in ("blue", "green"):
        deploy_greeter(ml_client, name, tmp_path)
    endpoint_file = ml_client.root / "endpoints" / "diabetes-ep" / "endpoint.json"
    before = endpoint_file.read_text()

    for traffic, mirror, complaint in REFUSED_TRAFFIC:
        endpoint.traffic, endpoint.mirror_traffic = traffic, mirror
        with pytest.raises(ValidationException, match=complaint):
            ml_client.begin_create_or_update(endpoint)

    assert endpoint_file.read_text() == before
    assert ml_client.online_endpoints.get("diabetes-ep").traffic == {"blue": 0, "green": 0}
    endpoint.traffic, endpoint.mirror_traffic = {"blue": 100}, {"green": 50}  # the most Azure takes
    got = ml_client.begin_create_or_update(endpoint).result()
    assert (got.traffic, got.mirror_traffic) == ({"blue": 100}, {"green": 50})


def test_a_deployment_taking_traffic_cannot_be_deleted_and_its_hosts_keep_serving(serving, tmp_path, request_file):
    ml_client = serving
    endpoint = greeting_endpoint(ml_client, tmp_path)

    with pytest.raises(ValidationException, match=r"takes 100% of endpoint 'diabetes-ep''s live traffic .* endpoint.traffic without it"):
        ml_client.online_deployments.begin_delete(name="blue", endpoint_name="diabetes-ep")
    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", request_file=request_file)) == {"greeting": "blue"}

    endpoint.traffic = {"blue": 0}
    ml_client.begin_create_or_update(endpoint).result()
    ml_client.online_deployments.begin_delete(name="blue", endpoint_name="diabetes-ep").result()
    assert list(ml_client.online_deployments.list("diabetes-ep")) == [] and hosts(ml_client) == []


@pytest.mark.parametrize("name", ["ep", "1-endpoint", "diabetes_ep", "endpoint-", "e" * 33])
def test_an_endpoint_name_azure_refuses_is_refused_with_the_rule_and_starts_nothing(serving, name):
    with pytest.raises(ValidationException, match="letters, digits and hyphens, starting with a letter, not ending with a hyphen, 3 to 32"):
        serving.begin_create_or_update(ManagedOnlineEndpoint(name=name))
    assert serving_processes(serving) == [] and serving._workspace.catalog.list_resources(ENDPOINT_KIND) == []


def test_a_deployment_of_an_unknown_endpoint_or_with_a_bad_name_or_no_scoring_script_starts_nothing(serving, model_dir, tmp_path):
    ml_client = serving
    mlflow_model = Model(path=str(model_dir), type=AssetTypes.MLFLOW_MODEL)
    with pytest.raises(ResourceNotFoundError, match="Online endpoint 'nowhere' was not found"):
        ml_client.online_deployments.begin_create_or_update(ManagedOnlineDeployment(name="blue", endpoint_name="nowhere", model=mlflow_model))
    create_endpoint(ml_client)
    router_only = [p.pid for p in serving_processes(ml_client)]  # no deployment yet: no provisioner either
    refused = [
        (ManagedOnlineDeployment(name="blue_1", endpoint_name="diabetes-ep", model=mlflow_model), "Deployment name 'blue_1' is not valid"),
        (ManagedOnlineDeployment(name="blue", endpoint_name="diabetes-ep", model=Model(path=str(model_dir), type=AssetTypes.CUSTOM_MODEL)),
         "needs a scoring script: give code_configuration"),
        (ManagedOnlineDeployment(name="blue", endpoint_name="diabetes-ep", model=mlflow_model, instance_count=0), "at least 1 instance"),
        (ManagedOnlineDeployment(name="blue", endpoint_name="diabetes-ep", model=mlflow_model,
                                 code_configuration=CodeConfiguration(code=str(code_folder(tmp_path, ECHO_SCORE)), scoring_script="main.py"),
                                 environment="AzureML-sklearn-1.5@latest"),
         r"scoring script 'main.py' is not in its code folder .*\(Python files there: score.py\)"),
    ]
    for deployment, complaint in refused:
        with pytest.raises(ValidationException, match=complaint):
            ml_client.online_deployments.begin_create_or_update(deployment)
    assert [p.pid for p in serving_processes(ml_client)] == router_only
    assert list(ml_client.online_deployments.list("diabetes-ep")) == []
    with pytest.raises(ResourceNotFoundError, match="Deployment of endpoint 'diabetes-ep' 'green' was not found"):
        ml_client.online_deployments.get("green", "diabetes-ep")


def send_many(uri: str, key: str, count: int) -> list[str]:
    """``count`` one-row requests over one keep-alive connection; the deployment that answered each."""
    address = urllib.parse.urlsplit(uri)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    answered = []
    for _ in range(count):
        connection.request("POST", address.path, body=json.dumps({}), headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        answered.append(response.getheader("azureml-model-deployment"))
    connection.close()
    return answered


def test_the_traffic_split_and_the_mirror_the_endpoint_is_given_reach_its_deployments_and_their_live_figures(serving, tmp_path):
    ml_client = serving
    endpoint = create_endpoint(ml_client)
    for name in ("blue", "green"):
        deploy_greeter(ml_client, name, tmp_path)
    uri, key = ml_client.online_endpoints.get("diabetes-ep").scoring_uri, ml_client.online_endpoints.get_keys("diabetes-ep").primary_key

    endpoint.traffic = {"blue": 80, "green": 20}
    ml_client.begin_create_or_update(endpoint).result()
    answered = send_many(uri, key, 300)
    assert set(answered) == {"blue", "green"} and 39 <= answered.count("green") <= 81  # 60 expected; 3 standard deviations

    def figures(name):  # a window holding both phases: what the mirror phase adds is the difference
        return ml_client.online_deployments.get_live_figures(name, "diabetes-ep", window_seconds=120)

    before = {name: figures(name) for name in ("blue", "green")}
    endpoint.traffic, endpoint.mirror_traffic = {"blue": 100}, {"green": 20}
    ml_client.begin_create_or_update(endpoint).result()
    assert set(send_many(uri, key, 300)) == {"blue"}
    time.sleep(0.5)  # the last mirrored copies are answered after the live requests
    added = {name: {field: figures(name)[field] - before[name][field] for field in ("requests", "mirrored")} for name in before}
    assert added["blue"] == {"requests": 300, "mirrored": 0}
    assert added["green"]["requests"] == added["green"]["mirrored"] and 39 <= added["green"]["mirrored"] <= 81


# -- keys --------------------------------------------------------------------------------------------
def test_a_regenerated_key_replaces_the_old_one_which_gets_401(serving, tmp_path, request_file):
    ml_client = serving
    endpoint = greeting_endpoint(ml_client, tmp_path)
    uri, body = ml_client.online_endpoints.get("diabetes-ep").scoring_uri, open(request_file, "rb").read()
    old = ml_client.online_endpoints.get_keys("diabetes-ep")
    assert isinstance(old, EndpointAuthKeys) and old.primary_key != old.secondary_key
    assert post(uri, body, None)[0] == 401 and post(uri, body, "not-a-key")[0] == 401

    ml_client.online_endpoints.begin_regenerate_keys(name="diabetes-ep", key_type="primary").result()

    new = ml_client.online_endpoints.get_keys("diabetes-ep")
    assert new.primary_key != old.primary_key and new.secondary_key == old.secondary_key
    assert post(uri, body, old.primary_key)[0] == 401
    assert post(uri, body, new.primary_key)[0] == 200 and post(uri, body, new.secondary_key)[0] == 200
    # the keys live in the catalog and in endpoint.json, which only this user may read; never in a log or a repr
    endpoint_file = ml_client.root / "endpoints" / "diabetes-ep" / "endpoint.json"
    assert stat.S_IMODE(endpoint_file.stat().st_mode) == 0o600
    logs = [p.read_text(errors="replace") for p in (ml_client.root / "endpoints").rglob("*.log")]
    shown = repr(ml_client.online_endpoints.get("diabetes-ep")) + repr(new) + "".join(logs)
    assert new.primary_key not in shown and new.secondary_key not in shown
    with pytest.raises(ValidationException, match="Key type must be 'primary' or 'secondary'"):
        ml_client.online_endpoints.begin_regenerate_keys(name="diabetes-ep", key_type="tertiary")


def test_an_aml_token_endpoint_hands_out_a_token_the_router_takes_and_has_no_keys_to_regenerate(serving, tmp_path, request_file):
    serving.begin_create_or_update(ManagedOnlineEndpoint(name="token-ep", auth_mode="aml_token")).result()
    deploy_greeter(serving, "blue", tmp_path, endpoint="token-ep")
    token = serving.online_endpoints.get_keys("token-ep")
    assert isinstance(token, EndpointAuthToken) and token.access_token and token.expiry_time_utc > time.time() + 3600
    uri = serving.online_endpoints.get("token-ep").scoring_uri
    status, body = post(uri, open(request_file, "rb").read(), token.access_token, deployment="blue")
    assert status == 200 and json.loads(body) == {"greeting": "blue"}
    assert post(uri, open(request_file, "rb").read(), "not-a-token", deployment="blue")[0] == 401
    with pytest.raises(ValidationException, match="does not use keys for authentication"):
        serving.online_endpoints.begin_regenerate_keys(name="token-ep")


# -- custom scoring --------------------------------------------------------------------------------------
def test_a_custom_score_py_in_a_conda_spec_environment_answers_from_its_own_venv(serving, tmp_path, request_file):
    ml_client = serving
    create_endpoint(ml_client)
    conda = tmp_path / "conda.yml"
    conda.write_text(yaml.safe_dump({"name": "echo", "dependencies": [f"python={PY}", "pip", {"pip": ["six==1.16.0"]}]}))
    environment = Environment(name="echo-env", conda_file=str(conda), image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04")
    deployed = deploy(ml_client, "echo", code_configuration=CodeConfiguration(code=str(code_folder(tmp_path, ECHO_SCORE)), scoring_script="score.py"),
                      environment=environment, environment_variables={"GREETING": "hi from the venv"})

    assert deployed.provisioning_state == "Succeeded" and deployed.environment == "echo-env:1"
    answer = json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", deployment_name="echo", request_file=request_file))
    assert answer == {"greeting": "hi from the venv", "rows": 3, "six": "1.16.0"}
    [host] = hosts(ml_client)
    assert host.cmdline()[0].startswith(str(ml_client.root / "environments"))  # the venv's interpreter, not this one
    assert "building environment echo-env:1" in ml_client.online_deployments.get_logs("echo", "diabetes-ep", lines=200)


def test_request_timeout_ms_bounds_a_request_and_an_update_replaces_every_host_with_the_new_settings(serving, tmp_path):
    ml_client = serving
    create_endpoint(ml_client)
    code = CodeConfiguration(code=str(code_folder(tmp_path, SLEEPY_SCORE)), scoring_script="score.py")
    # two requests at once per host: the quick request below does not wait behind the slow one's thread
    settings = OnlineRequestSettings(request_timeout_ms=500, max_concurrent_requests_per_instance=2)
    fields = dict(code_configuration=code, environment="AzureML-sklearn-1.5@latest", request_settings=settings)
    deploy(ml_client, "sleepy", environment_variables={"GREETING": "first"}, **fields)
    slow, quick = tmp_path / "slow.json", tmp_path / "quick.json"
    slow.write_text(json.dumps({"sleep": 3}))
    quick.write_text(json.dumps({}))

    with pytest.raises(ServiceRequestTimeoutError) as timed_out:  # the router's 408, raised as Azure's SDK raises it
        ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", deployment_name="sleepy", request_file=str(slow))
    assert timed_out.value.status_code == 408
    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", deployment_name="sleepy", request_file=str(quick))) == {"greeting": "first"}
    [old_host] = hosts(ml_client)

    updated = deploy(ml_client, "sleepy", environment_variables={"GREETING": "second"}, instance_count=2, **fields)

    assert (updated.provisioning_state, updated.instance_count, updated.environment_variables) == ("Succeeded", 2, {"GREETING": "second"})
    new_hosts = hosts(ml_client)
    assert len(new_hosts) == 2 and old_host.pid not in [h.pid for h in new_hosts]
    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", deployment_name="sleepy", request_file=str(quick))) == {"greeting": "second"}


def test_a_score_py_whose_init_raises_leaves_the_deployment_failed_with_the_error_in_its_logs(serving, tmp_path):
    ml_client = serving
    create_endpoint(ml_client)
    deployment = ManagedOnlineDeployment(name="broken", endpoint_name="diabetes-ep", instance_count=1,
                                         code_configuration=CodeConfiguration(code=str(code_folder(tmp_path, FAILING_SCORE)), scoring_script="score.py"),
                                         environment="AzureML-sklearn-1.5@latest")
    poller = ml_client.online_deployments.begin_create_or_update(deployment)

    with pytest.raises(HttpResponseError, match="the model file is missing"):
        poller.result(timeout=READY_TIMEOUT)
    failed = ml_client.online_deployments.get("broken", "diabetes-ep")
    assert failed.provisioning_state == "Failed" and "the model file is missing" in failed.properties["localml.error"]
    logs = ml_client.online_deployments.get_logs("broken", "diabetes-ep", lines=50)
    assert "RuntimeError: the model file is missing: cannot load weights.bin" in logs
    assert len(logs.splitlines()) <= 50
    assert hosts(ml_client) == []


# -- crashes ----------------------------------------------------------------------------------------------
def test_a_host_and_router_killed_with_sigkill_are_brought_back_by_the_next_operation_and_nothing_is_lost(serving, model_dir, request_file):
    ml_client = serving
    endpoint = create_endpoint(ml_client, tags={"team": "diabetes"})
    deploy(ml_client, "blue", model=Model(path=str(model_dir), type=AssetTypes.MLFLOW_MODEL))
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()
    before = ml_client.online_endpoints.get("diabetes-ep")
    keys = ml_client.online_endpoints.get_keys("diabetes-ep")
    [host] = hosts(ml_client)
    [router] = routers(ml_client)

    host.send_signal(signal.SIGKILL)
    router.send_signal(signal.SIGKILL)
    psutil.wait_procs([host, router], timeout=10)

    predictions = json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", request_file=request_file))
    assert len(predictions) == 3
    after = ml_client.online_endpoints.get("diabetes-ep")
    assert (after.scoring_uri, after.traffic, after.tags) == (before.scoring_uri, {"blue": 100}, {"team": "diabetes"})
    again = ml_client.online_endpoints.get_keys("diabetes-ep")
    assert (again.primary_key, again.secondary_key) == (keys.primary_key, keys.secondary_key)
    assert ml_client.online_deployments.get("blue", "diabetes-ep").provisioning_state == "Succeeded"
    [restarted] = hosts(ml_client)
    assert restarted.pid != host.pid
    assert "are gone: starting them again" in ml_client.online_deployments.get_logs("blue", "diabetes-ep", lines=100)


def test_a_host_that_stops_answering_its_liveness_probe_is_replaced_by_the_next_operation(serving, tmp_path, request_file):
    ml_client = serving
    endpoint = create_endpoint(ml_client)
    deploy_greeter(ml_client, "blue", tmp_path, liveness_probe=ProbeSettings(timeout=1))
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()
    [host] = hosts(ml_client)

    host.send_signal(signal.SIGSTOP)  # alive, but answers nothing: as a host stuck for good

    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", request_file=request_file)) == {"greeting": "blue"}
    [replacement] = hosts(ml_client)
    assert replacement.pid != host.pid and psutil.wait_procs([host], timeout=10)[1] == []
    assert "did not answer GET /live within 1 s" in ml_client.online_deployments.get_logs("blue", "diabetes-ep", lines=100)


def test_restore_all_brings_back_every_endpoint_after_a_reboot(serving, tmp_path, request_file):
    ml_client = serving
    endpoint = greeting_endpoint(ml_client, tmp_path)
    create_endpoint(ml_client, name="empty-ep")
    Supervisor(ml_client._workspace).stop("diabetes-ep")  # what a reboot does: every process gone, the catalog kept
    Supervisor(ml_client._workspace).stop("empty-ep")
    psutil.wait_procs(serving_processes(ml_client), timeout=10)

    assert sorted(ml_client.online_endpoints.restore_all()) == ["diabetes-ep", "empty-ep"]

    assert (len(routers(ml_client)), len(hosts(ml_client))) == (2, 1)
    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="diabetes-ep", request_file=request_file)) == {"greeting": "blue"}


def test_a_deployment_comes_up_after_the_process_that_asked_for_it_has_exited(serving, model_dir):
    ml_client = serving
    create_endpoint(ml_client)
    script = textwrap.dedent(f"""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import ManagedOnlineDeployment, Model
        from localml import LocalMLClient
        client = LocalMLClient({str(ml_client.root)!r})
        client.online_deployments.begin_create_or_update(ManagedOnlineDeployment(
            name="blue", endpoint_name="diabetes-ep", instance_count=1,
            model=Model(path={str(model_dir)!r}, type=AssetTypes.MLFLOW_MODEL)))  # no .result(): the caller leaves at once
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=READY_TIMEOUT, env={**os.environ, "PYTHONPATH": REPO})

    deadline = time.monotonic() + READY_TIMEOUT
    while (state := ml_client.online_deployments.get("blue", "diabetes-ep").provisioning_state) in ("Creating", "Updating"):
        assert time.monotonic() < deadline, "the deployment did not come up"
        time.sleep(0.2)
    assert state == "Succeeded" and len(hosts(ml_client)) == 1


def test_the_endpoint_groups_meet_injected_faults_as_the_other_groups_do(serving, monkeypatch):
    monkeypatch.setenv("LOCALML_FAULTS", "online_endpoints.get=503x1,online_deployments.list=429x1")
    with pytest.raises(HttpResponseError, match="Injected fault 503"):
        serving.online_endpoints.get("diabetes-ep")
    with pytest.raises(HttpResponseError, match="Injected fault 429"):
        serving.online_deployments.list("diabetes-ep")
    with pytest.raises(ResourceNotFoundError):  # each fault once: then the operation runs
        serving.online_endpoints.get("diabetes-ep")


def test_the_provisioner_starts_without_the_sdk_mlflow_or_prefect():
    # one starts per deployment: each of these costs seconds of CPU before it can start a host
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, localml.serving.supervisor; print(' '.join(sys.modules))"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert [m for m in loaded if m.split(".")[0] in ("azure", "mlflow", "prefect", "sklearn", "pandas")] == []
