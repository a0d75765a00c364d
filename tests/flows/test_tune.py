"""The tune flow end to end on a real Prefect server and a real localml workspace, and its spec offline."""

import mlflow.pyfunc
import pandas as pd
import pytest
from prefect.artifacts import Artifact
from pydantic import ValidationError

from flows.tune import TuneParameters, tune
from tasks.jobs import CommandJobSpec
from tasks.sweep import SweepJobSpec
from tests.conftest import REPO

SAMPLE = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
SCRIPT = REPO / "examples" / "train_diabetes" / "train.py"
PATIENTS = REPO / "tests" / "data" / "patient-data-0.csv"


def quick_params(**overrides) -> TuneParameters:
    values = dict(
        script=str(SCRIPT),
        data=str(SAMPLE),
        hyperparameters={"max_iter": 30, "log_every": 10},
        search_space={"learning_rate": {"type": "choice", "values": [0.01, 0.3]}},
        sampling_algorithm="grid",
        early_termination=None,
        max_total_trials=4,
        max_concurrent_trials=2,
    )
    return TuneParameters(**{**values, **overrides})


@pytest.mark.slow
def test_tune_registers_the_best_trials_model_and_a_rerun_trains_nothing(ml_client):
    first = tune(quick_params())
    assert first.status == "Completed" and not first.reused
    assert first.trials == 2  # the grid's size, below max_total_trials

    trials = {child.name: child for child in ml_client.jobs.list(parent_job_name=first.job_name)}
    assert set(trials) == {f"{first.job_name}_0", f"{first.job_name}_1"}
    tracking = ml_client._workspace.tracking.client
    auc = {name: tracking.get_run(name).data.metrics["AUC"] for name in trials}
    assert first.best_trial == max(auc, key=auc.get)
    assert first.best_score == pytest.approx(auc[first.best_trial])
    assert first.best_parameters == {"learning_rate": tracking.get_run(first.best_trial).data.params["learning_rate"]}

    model = ml_client.models.get("diabetes-tuned", version="1")
    assert first.model == "azureml:diabetes-tuned:1"
    assert model.job_name == first.best_trial and model.tags["sweep_job"] == first.job_name
    loaded = mlflow.pyfunc.load_model(str(ml_client._workspace.resolve_uri(model.path)))
    patients = pd.read_csv(PATIENTS)
    assert set(loaded.predict(patients)) <= {0, 1}

    summary = Artifact.get("tune-summary")
    assert first.best_trial in summary.data and "learning_rate" in summary.data
    assert Artifact.get("tune-trials") is not None
    assert Artifact.get("tune-trials-chart").data.startswith("data:image/png;base64,")

    again = tune(quick_params())
    assert again.reused and again.job_name == first.job_name and again.best_trial == first.best_trial
    assert len(list(ml_client.jobs.list(parent_job_name=first.job_name))) == 2  # no new trials


def test_the_default_parameters_make_an_azure_sweep_entity():
    spec = TuneParameters().job_spec("azureml:diabetes-csv:1")
    job = spec.to_job(name="tune-check")
    rest = job._to_rest_object()
    assert rest.properties.sampling_algorithm.sampling_algorithm_type == "Bayesian"
    assert rest.properties.early_termination.policy_type == "Bandit"
    assert set(job.search_space) == {"learning_rate", "max_leaf_nodes"}
    assert "--learning_rate ${{search_space.learning_rate}}" in job.trial.command  # as Azure writes a trial


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"search_space": {}}, "search_space is empty"),
        ({"search_space": {"learning_rate": {"type": "uniform", "min_value": 0.01, "max_value": 0.3}}}, "grid"),
        ({"search_space": {"learning_rate": {"type": "normal", "mu": 0.1, "sigma": 0.05}}, "sampling_algorithm": "bayesian"}, "bayesian"),
        ({"search_space": {"learning_rate": {"type": "choice"}}}, "learning_rate"),
        ({"search_space": {"depth": {"type": "choice", "values": [2, 4]}}}, "no --depth argument"),
        ({"search_space": {"max_leaf_nodes": {"type": "choice", "values": ["many"]}}}, "must be int"),
        ({"search_space": {"max_iter": {"type": "choice", "values": [10, 20]}}}, "both fixed"),
        ({"primary_metric": ""}, "primary_metric"),
        ({"early_termination": {"type": "bandit"}, "sampling_algorithm": "random"}, "slack_factor or slack_amount"),
    ],
    ids=["empty", "grid-over-uniform", "bayesian-over-normal", "choice-without-values", "unknown-argument", "wrong-type", "fixed-and-tuned",
         "no-metric", "bandit-without-slack"],
)
def test_bad_tuning_parameters_are_rejected_before_anything_runs(overrides, message):
    with pytest.raises(ValidationError, match=message):
        quick_params(**overrides)


def test_a_hyperparameter_the_trial_command_ignores_is_rejected():
    trial = CommandJobSpec(command="python train.py --x ${{inputs.x}}", inputs={"x": 1.0})
    with pytest.raises(ValidationError, match="never uses it"):
        SweepJobSpec(
            trial=trial, primary_metric="score",
            search_space={"x": {"type": "choice", "values": [1, 2]}, "y": {"type": "choice", "values": [1, 2]}},
        )
