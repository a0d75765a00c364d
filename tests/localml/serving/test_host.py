"""The serving host: real processes on real ports, real MLflow models and score.py scripts, over HTTP/1.1."""

from __future__ import annotations

import ast
import http.client
import json
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from localml.serving import host as host_module

FORMATS = ["input_data", "dataframe_split", "dataframe_records", "inputs"]
BODY_LIMIT = 64 * 1024

SCORE_PY = """
    import json, os, sys, time
    import helper  # a module beside score.py: its folder is on sys.path, as on Azure
    import host  # the user's own module named like ours: the user's must win

    def init():
        global factor
        factor = float(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "factor.txt")).read())

    def run(raw_data):
        request = json.loads(raw_data)
        if request.get("fail"):
            return 1 / 0  # the line the traceback must name
        if request.get("sleep"):
            time.sleep(request["sleep"])
        if request.get("modules"):
            return sorted({name.split(".")[0] for name in sys.modules})
        if request.get("text"):
            return request["text"]  # Azure's server sends a string as a JSON string
        return {"doubled": [value * factor for value in request["data"]], "helper": helper.NAME, "host": host.NAME}
"""


def post(port: int, body: bytes | str | dict, path: str = "/score") -> tuple[int, object, dict]:
    """One request on its own connection: (status, the JSON answer, headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = json.dumps(body) if isinstance(body, dict) else body
    connection.request("POST", path, payload, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    return response.status, json.loads(answer), dict(response.getheaders())


def get(port: int, path: str) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    status, answer = response.status, json.loads(response.read())
    connection.close()
    return status, answer


def request_body(request_format: str, frame) -> dict:
    if request_format in ("input_data", "dataframe_split"):
        return {request_format: json.loads(frame.to_json(orient="split"))}
    if request_format == "dataframe_records":
        return {request_format: json.loads(frame.to_json(orient="records"))}
    return {request_format: {column: frame[column].tolist() for column in frame.columns}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_hosts(serving_models, launch_host):
    """A host per model, started together (each takes seconds to import MLflow)."""
    hosts = {name: launch_host(model_dir=str(getattr(serving_models, name).path), max_body_bytes=BODY_LIMIT)
             for name in ("lightgbm", "sklearn")}
    for started in hosts.values():
        started.wait_until_started()
    yield hosts
    for started in hosts.values():
        started.stop()


@pytest.fixture(scope="module")
def lightgbm_port(mlflow_hosts) -> int:
    return mlflow_hosts["lightgbm"].port


@pytest.fixture(scope="module")
def custom_host(tmp_path_factory, launch_host):
    code, model = tmp_path_factory.mktemp("code"), tmp_path_factory.mktemp("model")
    (code / "score.py").write_text(textwrap.dedent(SCORE_PY).lstrip())
    (code / "helper.py").write_text("NAME = 'helper beside score.py'\n")
    (code / "host.py").write_text("NAME = \"the user's host module\"\n")
    (model / "factor.txt").write_text("2")
    started = launch_host(model_kind="custom", code_dir=str(code), scoring_script="score.py",
                          max_concurrent_requests=1, environment={"AZUREML_MODEL_DIR": str(model)})
    started.wait_until_started()
    yield started
    started.stop()


def write_score_py(folder: Path, text: str) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(text).lstrip())
    return str(folder)


# ------------------------------------------------------------------------------------------------ MLflow models


@pytest.mark.parametrize("model", ["lightgbm", "sklearn"])
@pytest.mark.parametrize("request_format", FORMATS)
def test_each_request_format_answers_what_the_model_predicts(serving_models, mlflow_hosts, model, request_format):
    patients = serving_models.patients
    status, answer, _ = post(mlflow_hosts[model].port, request_body(request_format, patients))
    expected = getattr(serving_models, model).estimator.predict(patients).tolist()
    assert status == 200
    # Azure's format is answered with the bare list, as Azure's MLflow scoring does; MLflow's with {"predictions"}
    assert answer == (expected if request_format == "input_data" else {"predictions": expected})


def test_a_one_row_request_answers_that_rows_prediction(serving_models, lightgbm_port):
    row = serving_models.patients.iloc[[7]]
    status, answer, _ = post(lightgbm_port, request_body("input_data", row))
    assert (status, answer) == (200, serving_models.lightgbm.estimator.predict(row).tolist())


def test_requests_share_one_keep_alive_connection(serving_models, lightgbm_port):
    connection = http.client.HTTPConnection("127.0.0.1", lightgbm_port, timeout=60)
    body = json.dumps(request_body("input_data", serving_models.patients.head(1)))
    sockets = []
    for _ in range(3):
        connection.request("POST", "/score", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "keep-alive"
        response.read()
        sockets.append(connection.sock)
    connection.close()
    assert sockets[0] is not None and all(sock is sockets[0] for sock in sockets)


def test_a_client_that_expects_100_continue_gets_it_before_it_sends_the_body(serving_models, lightgbm_port):
    # curl sends bodies over 1 kB so, and waits a second for the 100 before sending the body anyway
    body = json.dumps(request_body("input_data", serving_models.patients.head(1))).encode()
    with socket.create_connection(("127.0.0.1", lightgbm_port), timeout=5) as client:
        client.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.sendall(body)
        assert client.recv(1000).startswith(b"HTTP/1.1 200 OK")


def test_live_and_ready_answer_200_once_the_model_is_loaded(lightgbm_port):
    assert get(lightgbm_port, "/live")[0] == 200
    assert get(lightgbm_port, "/ready")[0] == 200


def test_the_state_file_names_the_process_and_its_port(mlflow_hosts):
    started = mlflow_hosts["lightgbm"]
    assert started.state() == {"pid": started.process.pid, "port": started.port, "ready": True}


def test_the_openapi_document_describes_the_columns_and_its_example_scores(serving_models, lightgbm_port):
    status, document = get(lightgbm_port, "/swagger.json")
    assert status == 200 and document["openapi"].startswith("3.")
    content = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    columns = list(serving_models.patients.columns)
    assert content["schema"]["properties"]["dataframe_records"]["items"]["properties"]["Age"] == {"type": "integer", "format": "int64"}
    assert content["example"]["input_data"]["columns"] == columns
    # the example is the input example saved with the model, and the host takes it
    assert content["example"]["input_data"]["data"][0] != [0] * len(columns)
    assert post(lightgbm_port, content["example"])[0] == 200


def test_a_missing_column_is_a_400_naming_the_expected_columns(serving_models, lightgbm_port):
    status, answer, _ = post(lightgbm_port, request_body("input_data", serving_models.patients.drop(columns=["Age"]).head(2)))
    assert status == 400
    assert "Missing column(s) Age" in answer["error"]
    assert "Pregnancies (long)" in answer["error"] and "BMI (double)" in answer["error"]


def test_a_record_without_a_column_is_a_400_naming_the_record_and_the_column(serving_models, lightgbm_port):
    records = request_body("dataframe_records", serving_models.patients.head(2))
    del records["dataframe_records"][1]["BMI"]
    status, answer, _ = post(lightgbm_port, records)
    assert status == 400 and "Record 1 of 'dataframe_records' lacks the column(s) BMI" in answer["error"]


@pytest.mark.parametrize(("column", "value", "words"), [
    ("Age", "forty", 'Column Age expects long (an integer) but row 0 holds "forty" (string)'),
    ("Age", 40.5, "Column Age expects long (an integer) but row 0 holds 40.5 (number)"),
    ("BMI", True, "Column BMI expects double (a number or null) but row 0 holds true (boolean)"),
])
def test_a_wrong_type_is_a_400_naming_the_column_and_its_type(serving_models, lightgbm_port, column, value, words):
    body = request_body("input_data", serving_models.patients.head(1))
    body["input_data"]["data"][0][body["input_data"]["columns"].index(column)] = value
    status, answer, _ = post(lightgbm_port, body)
    assert status == 400 and words in answer["error"]
    assert "the model expects the columns Pregnancies (long)" in answer["error"]


def test_malformed_json_is_a_400_saying_so(lightgbm_port):
    status, answer, _ = post(lightgbm_port, b'{"input_data": {"columns": [')
    assert status == 400 and answer["error"].startswith("The body is not valid JSON")


def test_an_unknown_format_is_a_400_naming_the_formats_accepted(lightgbm_port):
    status, answer, _ = post(lightgbm_port, {"data": [[1, 2, 3]]})
    assert status == 400
    assert "Unknown request format (got ['data'])" in answer["error"]
    assert "input_data, dataframe_split, dataframe_records, inputs" in answer["error"]


def test_rows_of_the_wrong_length_are_a_400_naming_the_row(lightgbm_port):
    status, answer, _ = post(lightgbm_port, {"dataframe_split": {"columns": ["Age", "BMI"], "data": [[30, 22.5], [31]]}})
    assert status == 400 and "Row 1 of 'dataframe_split.data' is [31]" in answer["error"]


def test_a_body_over_the_limit_is_a_413_and_the_host_keeps_serving(serving_models, lightgbm_port):
    status, answer, _ = post(lightgbm_port, b" " * (BODY_LIMIT + 1))
    assert status == 413 and f"at most {BODY_LIMIT}" in answer["error"]
    assert post(lightgbm_port, request_body("input_data", serving_models.patients.head(1)))[0] == 200


def test_a_model_that_raises_is_a_500_with_its_traceback_on_stderr_and_the_host_keeps_serving(serving_models, mlflow_hosts):
    # BMI is a double column, so null (NaN) passes the signature; scikit-learn's LogisticRegression refuses NaN
    sklearn_host = mlflow_hosts["sklearn"]
    body = request_body("input_data", serving_models.patients.head(1))
    good = json.loads(json.dumps(body))
    body["input_data"]["data"][0][body["input_data"]["columns"].index("BMI")] = None
    status, answer, _ = post(sklearn_host.port, body)
    assert status == 500 and "ValueError" in answer["error"] and "NaN" in answer["error"]
    assert "Traceback (most recent call last)" in sklearn_host.stderr() and "contains NaN" in sklearn_host.stderr()
    assert post(sklearn_host.port, good)[0] == 200


# ------------------------------------------------------------------------------------------------ score.py


def test_a_custom_score_py_answers_with_runs_return_value_as_json(custom_host):
    status, answer, headers = post(custom_host.port, {"data": [1, 2.5]})
    assert status == 200
    assert answer == {"doubled": [2.0, 5.0], "helper": "helper beside score.py", "host": "the user's host module"}
    assert headers["x-ms-run-function-failed"] == "False" and float(headers["x-ms-run-fn-exec-ms"]) >= 0


def test_a_string_from_run_is_sent_as_a_json_string_as_azure_does(custom_host):
    assert post(custom_host.port, {"text": "already a string"})[:2] == (200, "already a string")


def test_a_run_that_raises_is_a_500_with_the_score_py_line_on_stderr(custom_host):
    status, answer, headers = post(custom_host.port, {"fail": True})
    assert status == 500 and headers["x-ms-run-function-failed"] == "True"
    assert answer == {"message": "An unexpected error occurred in scoring script. Check the logs for more info."}
    stderr = custom_host.stderr()
    assert "ZeroDivisionError" in stderr and "score.py\", line 12, in run" in stderr
    assert post(custom_host.port, {"data": [1]})[0] == 200


def test_a_long_prediction_does_not_block_live(custom_host):
    connection = http.client.HTTPConnection("127.0.0.1", custom_host.port, timeout=60)
    connection.request("POST", "/score", json.dumps({"sleep": 1.0, "data": []}))
    time.sleep(0.2)  # the slow request holds the only prediction thread
    started = time.monotonic()
    assert get(custom_host.port, "/live")[0] == 200
    assert time.monotonic() - started < 0.5
    assert connection.getresponse().status == 200
    connection.close()


def test_a_custom_host_loads_only_the_standard_library_and_the_users_modules(custom_host):
    loaded = post(custom_host.port, {"modules": True})[1]
    assert [name for name in loaded if name in ("mlflow", "pandas", "numpy", "localml", "azure")] == []


def test_the_host_imports_only_the_standard_library_at_module_level():
    # it starts in a deployment's venv, which may hold only what the user's conda spec names
    tree = ast.parse(Path(host_module.__file__).read_text())
    modules = [alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names]
    modules += [node.module for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert [name for name in modules if name.split(".")[0] not in sys.stdlib_module_names] == []


def test_ready_is_503_and_live_200_while_init_runs(tmp_path, launch_host):
    release = tmp_path / "release"
    code = write_score_py(tmp_path / "code", f"""
        import os, time
        def init():
            while not os.path.exists({str(release)!r}):
                time.sleep(0.02)
        def run(raw_data):
            return "ok"
    """)
    port = free_port()
    started = launch_host(model_kind="custom", code_dir=code, scoring_script="score.py", port=port)
    deadline = time.monotonic() + 30
    while True:  # until the host listens
        try:
            live = get(port, "/live")[0]
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline and started.process.poll() is None
            time.sleep(0.02)
    assert live == 200
    assert get(port, "/ready")[0] == 503
    assert started.state() is None
    release.touch()
    assert started.wait_until_started()["ready"] is True
    assert get(port, "/ready")[0] == 200


def test_an_init_that_raises_leaves_the_error_in_the_state_file_and_exits_1(tmp_path, launch_host):
    code = write_score_py(tmp_path / "code", """
        def init():
            raise RuntimeError("no model.pkl in the model folder")
        def run(raw_data):
            return raw_data
    """)
    started = launch_host(model_kind="custom", code_dir=code, scoring_script="score.py")
    assert started.process.wait(timeout=30) == 1
    assert started.state() == {"pid": started.process.pid, "ready": False, "error": "RuntimeError: no model.pkl in the model folder"}
    assert "Traceback (most recent call last)" in started.stderr() and "score.py\", line 2, in init" in started.stderr()


def test_a_missing_scoring_script_is_an_error_naming_it(tmp_path, launch_host):
    started = launch_host(model_kind="custom", code_dir=str(tmp_path), scoring_script="score.py")
    assert started.process.wait(timeout=30) == 1
    assert started.state()["error"].startswith("FileNotFoundError: No scoring script 'score.py' in")


# ------------------------------------------------------------------------------------------------ the state file


def test_the_state_file_is_replaced_whole_never_half_written(tmp_path, monkeypatch):
    state_file = tmp_path / "state.json"
    host_module.write_state(str(state_file), {"pid": 1, "port": 2, "ready": True})

    def write_half(state, stream):
        stream.write('{"pid": ')
        raise OSError("disk full")

    monkeypatch.setattr(host_module.json, "dump", write_half)
    with pytest.raises(OSError):
        host_module.write_state(str(state_file), {"pid": 3, "ready": False, "error": "x"})
    assert json.loads(state_file.read_text()) == {"pid": 1, "port": 2, "ready": True}
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


# ------------------------------------------------------------------------------------------------ one thread


def _features_and_label(serving_models):
    patients = serving_models.patients
    return patients, serving_models.lightgbm.estimator.predict(patients)


def test_a_scikit_learn_pipeline_predicts_on_one_thread_with_the_same_predictions(serving_models):
    import lightgbm
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, label = _features_and_label(serving_models)
    pipeline = make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(n_estimators=10, verbose=-1)).fit(features, label)
    before = pipeline.predict(features)
    host_module.use_one_thread(pipeline)
    assert pipeline.get_params()["lgbmclassifier__n_jobs"] == 1
    assert (pipeline.predict(features) == before).all()


def test_a_native_lightgbm_booster_predicts_on_one_thread_with_the_same_predictions(serving_models):
    import lightgbm

    features, label = _features_and_label(serving_models)
    trained = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(features, label), 10)
    booster = lightgbm.Booster(model_str=trained.model_to_string())  # as MLflow loads it, from its file
    before = booster.predict(features)
    host_module.use_one_thread(booster)
    assert booster.predict.keywords == {"num_threads": 1}
    assert (booster.predict(features) == before).all()


def test_a_native_xgboost_booster_predicts_on_one_thread_with_the_same_predictions(serving_models):
    import xgboost

    features, label = _features_and_label(serving_models)
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(features, label), 10)
    before = booster.predict(xgboost.DMatrix(features))
    host_module.use_one_thread(booster)
    assert json.loads(booster.save_config())["learner"]["generic_param"]["nthread"] == "1"
    assert (booster.predict(xgboost.DMatrix(features)) == before).all()
