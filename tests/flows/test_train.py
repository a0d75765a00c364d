"""The train flow end to end on a real Prefect server and a real localml workspace."""

import os
import signal
import subprocess
import sys
import time

import mlflow.pyfunc
import pandas as pd
import psutil
import pytest
from prefect import flow
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client as prefect_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH
from pydantic import ValidationError

from flows.train import TrainParameters, train
from tasks.jobs import CommandJobSpec, InputSpec, submit_job
from tests.conftest import REPO

SAMPLE = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
SCRIPT = REPO / "examples" / "train_diabetes" / "train.py"
SLOW_SCRIPT = REPO / "tests" / "flows" / "scripts" / "slow_train.py"
PATIENTS = REPO / "tests" / "data" / "patient-data-0.csv"


def quick_params(**overrides) -> TrainParameters:
    values = dict(script=str(SCRIPT), data=str(SAMPLE), hyperparameters={"max_iter": 10}, compute="cpu-cluster")
    return TrainParameters(**{**values, **overrides})


def task_runs(state) -> dict[str, object]:
    """The task runs of a finished flow run, by task name."""
    with prefect_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return {run.name.rsplit("-", 1)[0]: run for run in runs}


def test_train_registers_a_model_and_a_rerun_is_served_from_cache(ml_client):
    first_state = train(quick_params(), return_state=True)
    first = first_state.result()
    assert first.status == "Completed"
    assert first.metrics["accuracy"] > 0.85 and first.metrics["AUC"] > 0.9
    assert first.model == "azureml:diabetes-classifier:1" and not first.reused

    # the registered model scores raw patient rows
    model = ml_client.models.get("diabetes-classifier", version="1")
    assert model.type == "mlflow_model" and model.job_name == first.job_name
    loaded = mlflow.pyfunc.load_model(str(ml_client._workspace.resolve_uri(model.path)))
    patients = pd.read_csv(PATIENTS)
    predictions = loaded.predict(patients)
    assert len(predictions) == len(patients) and set(predictions) <= {0, 1}

    summary = Artifact.get("train-summary")
    assert first.job_name in summary.data and "AUC" in summary.data

    second_state = train(quick_params(), return_state=True)
    second = second_state.result()
    assert second.reused and second.job_name == first.job_name and second.model == first.model
    assert [job.name for job in ml_client.jobs.list()] == [first.job_name]
    runs = task_runs(second_state)
    assert runs["wait_for_job"].state.name == "Cached"
    assert runs["register_model"].state.name == "Cached"

    # refresh trains again: a second job and a second model version
    third = train(quick_params(refresh=True))
    assert third.job_name != first.job_name and not third.reused
    assert third.model == "azureml:diabetes-classifier:2"


def test_transient_faults_are_retried_and_submit_exactly_one_job(ml_client, monkeypatch):
    # a lost reply (@after) is the hard case: the job exists, the caller saw an error
    monkeypatch.setenv("LOCALML_FAULTS", "jobs.get=429x1,jobs.create_or_update=503x1,jobs.create_or_update@after=503x1")
    state = train(quick_params(), return_state=True)
    assert state.is_completed(), state.message
    catalog = ml_client._workspace.catalog
    assert catalog.faults_raised("jobs.get") == 1
    assert catalog.faults_raised("jobs.create_or_update") == 1
    assert catalog.faults_raised("jobs.create_or_update@after") == 1
    assert len(list(ml_client.jobs.list())) == 1
    # the lost reply is followed by a look for the job in the same try, which finds it: no retry for that one
    assert task_runs(state)["submit_job"].run_count == 3
    # that job is this run's own (tagged with its flow run), so the run trained it: nothing was reused
    [job] = ml_client.jobs.list()
    assert job.tags["amlflows.flow_run_id"] == str(state.state_details.flow_run_id)
    assert not state.result().reused


def test_a_failing_script_fails_at_once_with_its_own_error(ml_client):
    params = quick_params(script=str(SLOW_SCRIPT), hyperparameters={"sleep_seconds": 0, "fail": 1}, compute="local")
    state = train(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="ValueError: the training data has no usable rows"):
        state.result()
    runs = task_runs(state)
    assert runs["wait_for_job"].run_count == 1  # a user error is not retried
    [job] = ml_client.jobs.list()
    assert job.status == "Failed"


@pytest.mark.slow
def test_a_killed_flow_restarted_reattaches_to_its_running_job_and_leaves_no_prefect_server(ml_client, workspace_root, tmp_path):
    args = ["--script", str(SLOW_SCRIPT), "--data", str(SAMPLE), "--compute", "local", "--hyperparameters", "sleep_seconds=8"]
    # as a user runs it: no PREFECT_API_URL, so the command starts a temporary Prefect server of its own
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_LOCAL_STORAGE_PATH=str(PREFECT_LOCAL_STORAGE_PATH.value()))
    process = subprocess.Popen(
        [sys.executable, "-m", "amlflows.cli", "run", "train", *args], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not [j for j in ml_client.jobs.list() if j.status == "Running"]:
            assert process.poll() is None, "the flow process ended before its job ran"
            assert time.monotonic() < deadline, "the job never started running"
            time.sleep(0.5)
        servers = [p for p in psutil.Process(process.pid).children() if "prefect.server.api.server" in " ".join(p.cmdline())]
        assert servers, "the flow ran without a temporary Prefect server"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    [job] = ml_client.jobs.list()
    assert ml_client.jobs.get(job.name).status in ("Running", "Finalizing")  # the job outlives its flow
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert alive == [], "the killed run's temporary Prefect server still runs"

    result = train(TrainParameters(script=str(SLOW_SCRIPT), data=str(SAMPLE), compute="local", hyperparameters={"sleep_seconds": 8}))
    assert result.reused and result.job_name == job.name and result.status == "Completed"
    assert len(list(ml_client.jobs.list())) == 1


# -- bad input: a clear message, and no job -------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"script": "missing/train.py"}, "Training script 'missing/train.py' not found"),
        ({"data": "missing/data.csv"}, "Data path 'missing/data.csv' not found"),
        ({"hyperparameters": {"max_iter": "many"}}, "Hyperparameter 'max_iter' must be int"),
        ({"hyperparameters": {"learning_rate": "fast"}}, "Hyperparameter 'learning_rate' must be float"),
        ({"hyperparameters": {"n_trees": 5}}, "has no --n_trees argument"),
        ({"command": "python train.py --training_data ${{inputs.training_data}} --x ${{inputs.nope}}"}, "no input named 'nope'"),
    ],
)
def test_bad_parameters_are_rejected_before_anything_runs(overrides, message):
    with pytest.raises(ValidationError, match=message):
        quick_params(**overrides)


def test_an_unknown_data_asset_fails_before_any_job(ml_client):
    state = train(quick_params(data="azureml:no-such-data:1"), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="no-such-data"):
        state.result()
    assert list(ml_client.jobs.list()) == []


def test_an_unknown_compute_fails_before_any_job(ml_client):
    @flow
    def submit_only(spec: CommandJobSpec):
        return submit_job("local", spec)

    spec = CommandJobSpec(
        code=str(SCRIPT.parent),
        command="python train.py --training_data ${{inputs.data}}",
        inputs={"data": InputSpec(type="uri_file", path=str(SAMPLE))},
        compute="gpu-nowhere",
    )
    state = submit_only(spec, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="gpu-nowhere"):
        state.result()
    assert task_runs(state)["submit_job"].run_count == 1  # not found is not transient
    assert list(ml_client.jobs.list()) == []


def test_a_job_past_its_timeout_is_canceled(ml_client):
    params = quick_params(
        script=str(SLOW_SCRIPT), hyperparameters={"sleep_seconds": 60}, compute="local", timeout_minutes=0.1
    )
    state = train(params, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="was canceled"):
        state.result()
    [job] = ml_client.jobs.list()
    assert job.status == "Canceled"
