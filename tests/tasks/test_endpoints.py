"""The endpoint tasks on a real localml endpoint: real serving processes on 127.0.0.1, a real MLflow model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from prefect.logging import disable_run_logger

from tasks.endpoints import (
    DeploymentSpec,
    EndpointSpec,
    create_deployment,
    delete_deployment,
    ensure_endpoint,
    invoke_endpoint,
    read_deployment_figures,
    set_traffic,
)
from tasks.workspace import get_client

REPO = Path(__file__).resolve().parents[2]
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness",
            "SerumInsulin", "BMI", "DiabetesPedigree", "Age"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> tuple[Path, object, pd.DataFrame]:
    """A logistic regression saved as an MLflow model with a signature, and rows it has not seen."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.read_csv(DIABETES_CSV, nrows=1200)
    frame[FEATURES] = frame[FEATURES].astype("float64")  # a signature of doubles takes any number a caller sends
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame[FEATURES].iloc[:1000], frame["Diabetic"].iloc[:1000])
    folder = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(model, str(folder), serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                              signature=infer_signature(frame[FEATURES].head(5), model.predict(frame[FEATURES].head(5))))
    return folder, model, frame[FEATURES].iloc[1000:1010]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALML_ROOT", str(tmp_path / "localml"))
    yield "local"
    client = get_client("local")
    for endpoint in client.online_endpoints.list():
        client.online_endpoints.begin_delete(name=endpoint.name).result()


def test_a_model_deploys_once_takes_traffic_answers_and_is_counted(workspace, model_folder):
    folder, model, rows = model_folder
    spec = DeploymentSpec(name="blue", endpoint_name="diabetes-ep", model=str(folder))
    request = {"input_data": {"columns": FEATURES, "index": list(range(len(rows))), "data": rows.to_numpy().tolist()}}
    with disable_run_logger():
        endpoint = ensure_endpoint.fn(workspace, EndpointSpec(name="diabetes-ep"))
        assert endpoint.scoring_uri.startswith("http://127.0.0.1:")
        blue = create_deployment.fn(workspace, spec)
        assert blue.created and blue.provisioning_state == "Succeeded"
        assert set_traffic.fn(workspace, "diabetes-ep", {"blue": 100}).traffic == {"blue": 100}
        # the same spec again deploys nothing: a retry or a re-run finds the deployment serving it
        assert not create_deployment.fn(workspace, spec).created
        assert ensure_endpoint.fn(workspace, EndpointSpec(name="diabetes-ep")).traffic == {"blue": 100}

        answers = [invoke_endpoint.fn(workspace, "diabetes-ep", request) for _ in range(3)]
        assert answers[0] == model.predict(rows).tolist() == answers[2]
        figures = read_deployment_figures.fn(workspace, "diabetes-ep", "blue", window_seconds=60)
        assert figures.requests >= 3 and figures.failures == 0 and figures.latency_ms["p50"] > 0

        with pytest.raises(Exception, match="traffic"):  # Azure refuses to delete a deployment that takes traffic
            delete_deployment.fn(workspace, "diabetes-ep", "blue")
        set_traffic.fn(workspace, "diabetes-ep", {"blue": 0})
        assert delete_deployment.fn(workspace, "diabetes-ep", "blue")
        assert not delete_deployment.fn(workspace, "diabetes-ep", "blue")


def test_a_deployment_whose_init_raises_fails_the_task_with_the_end_of_its_log(workspace, model_folder, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(
        "def init():\n    raise RuntimeError('the model file is missing from AZUREML_MODEL_DIR')\n\n"
        "def run(raw_data):\n    return []\n"
    )
    spec = DeploymentSpec(name="broken", endpoint_name="broken-ep", model=str(model_folder[0]), model_type="custom_model",
                          code_path=str(code), scoring_script="score.py", environment="AzureML-sklearn-1.5@latest")
    with disable_run_logger():
        ensure_endpoint.fn(workspace, EndpointSpec(name="broken-ep"))
        with pytest.raises(RuntimeError, match="broken-ep/broken failed to start") as raised:
            create_deployment.fn(workspace, spec)
    assert "the model file is missing from AZUREML_MODEL_DIR" in str(raised.value)
    assert 'score.py", line 2, in init' in str(raised.value)  # the end of the deployment's log
