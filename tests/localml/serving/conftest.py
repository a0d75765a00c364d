"""Fixtures for the serving tests: small real MLflow models, and serving hosts started as the supervisor starts them.

A host is a real process (``<python> localml/serving/host.py <spec.json>``) on a real port; every host a fixture
starts is stopped when the session ends, whatever the tests did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[3]
HOST_SCRIPT = REPO / "localml" / "serving" / "host.py"
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
#: rows to score: the same features as the training data, without PatientID and the Diabetic label
PATIENTS_CSV = REPO / "tests" / "data" / "patient-data-0.csv"
START_TIMEOUT = 90.0  # importing MLflow and loading a model takes seconds, more on a loaded 2-core machine


@dataclass
class Host:
    process: subprocess.Popen
    spec: dict
    folder: Path

    @property
    def state_file(self) -> Path:
        return Path(self.spec["state_file"])

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def wait_until_started(self) -> dict:
        """The state file once the host wrote it (or exited); fails the test past START_TIMEOUT."""
        deadline = time.monotonic() + START_TIMEOUT
        while (state := self.state()) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the host wrote no state file (exit status {self.process.poll()}):\n{self.stderr()}")
            time.sleep(0.05)
        return state

    @property
    def port(self) -> int:
        return self.spec["port"] or self.wait_until_started()["port"]

    def stderr(self) -> str:
        return (self.folder / "stderr.log").read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def launch_host(tmp_path_factory):
    """``launch_host(model_kind=..., model_dir=..., ...)``: a host process started on the given spec (port 0 unless
    given), not waited for; ``environment`` adds variables (``AZUREML_MODEL_DIR``). All are stopped at the end."""
    started: list[Host] = []

    def launch(*, environment: dict[str, str] | None = None, **fields) -> Host:
        folder = tmp_path_factory.mktemp("host")
        spec = {
            "endpoint": "diabetes-ep", "deployment": "blue", "instance": 0, "port": 0, "model_kind": "mlflow",
            "model_dir": None, "code_dir": None, "scoring_script": None, "max_concurrent_requests": 1,
            "max_body_bytes": 1 << 20, "state_file": str(folder / "state.json"), **fields,
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        with open(folder / "stdout.log", "wb") as stdout, open(folder / "stderr.log", "wb") as stderr:
            process = subprocess.Popen([sys.executable, str(HOST_SCRIPT), str(folder / "spec.json")], cwd=folder,
                                       stdout=stdout, stderr=stderr, env={**os.environ, **(environment or {})})
        host = Host(process, spec, folder)
        started.append(host)
        return host

    yield launch
    for host in started:
        host.stop()


@pytest.fixture(scope="session")
def serving_models(tmp_path_factory):
    """A LightGBM and a scikit-learn classifier of diabetes, each saved as an MLflow model with its signature, the
    fitted estimators themselves (whose ``predict`` the host's answers must equal) and patients to score."""
    import lightgbm
    import mlflow.lightgbm
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    training = pd.read_csv(DIABETES_CSV, nrows=2000)
    features, label = training.drop(columns=["PatientID", "Diabetic"]), training["Diabetic"]
    folder = tmp_path_factory.mktemp("models")
    # MLflow hints that integer columns cannot hold missing values: these never do
    warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column", UserWarning)
    boosted = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1).fit(features, label)
    # the requirements named: MLflow would otherwise infer them in a subprocess that loads the model (7 s each)
    mlflow.lightgbm.save_model(boosted, folder / "lightgbm", input_example=features.head(2), pip_requirements=["lightgbm"],
                               signature=infer_signature(features, boosted.predict(features)))
    linear = LogisticRegression(max_iter=1000).fit(features, label)
    mlflow.sklearn.save_model(linear, folder / "sklearn", serialization_format="cloudpickle", pip_requirements=["scikit-learn"],
                              signature=infer_signature(features, linear.predict(features)))
    return SimpleNamespace(
        lightgbm=SimpleNamespace(path=folder / "lightgbm", estimator=boosted),
        sklearn=SimpleNamespace(path=folder / "sklearn", estimator=linear),
        patients=pd.read_csv(PATIENTS_CSV),
    )
