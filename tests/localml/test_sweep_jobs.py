"""localml sweep jobs end to end: trials are real child jobs, metrics come from the real MLflow store.

The trial scripts are synthetic and deterministic (a metric that is a known function of the
hyperparameters, or a known curve per epoch), so each expectation follows from Azure's definition
of the sampling or policy, not from a recorded run.
"""

from __future__ import annotations

import textwrap

import pytest
from azure.ai.ml import Output, command
from azure.ai.ml.entities import AmlCompute, Model
from azure.ai.ml.sweep import (
    BanditPolicy,
    Choice,
    MedianStoppingPolicy,
    Normal,
    RandomSamplingAlgorithm,
    TruncationSelectionPolicy,
    Uniform,
)

from localml import LocalMLClient
from localml.errors import LocalMLValidationError

ENV = "AzureML-sklearn-1.5@latest"
SWEEP_TIMEOUT = 300.0

TRIAL_SCRIPTS = {
    # the DP-100 shape: accuracy peaks at reg_rate 0.1; the "model" (logged as the run's artifact
    # "model", as mlflow.<flavor>.log_model does) records what it was trained with
    "reg.py": """
        import argparse, math, pathlib
        import mlflow
        parser = argparse.ArgumentParser()
        parser.add_argument("--reg_rate", type=float, required=True)
        args = parser.parse_args()
        mlflow.log_metric("training_accuracy_score", 0.9 - 0.05 * abs(math.log10(args.reg_rate) + 1))
        pathlib.Path("model").mkdir()
        pathlib.Path("model/weights.txt").write_text(f"reg_rate={args.reg_rate}")
        mlflow.log_artifacts("model", "model")
    """,
    # a smooth objective with its maximum 1.0 at (0.3, 0.7)
    "smooth.py": """
        import argparse
        import mlflow
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=float, required=True)
        parser.add_argument("--y", type=float, required=True)
        args = parser.parse_args()
        mlflow.log_metric("score", 1 - (args.x - 0.3) ** 2 - (args.y - 0.7) ** 2)
    """,
    # a learning curve: score = quality * epoch, one logging per epoch; a weaker trial learns more slowly
    # (pause / quality between loggings), so whenever it logs, the stronger ones have logged that epoch too
    "curve.py": """
        import argparse, time
        import mlflow
        parser = argparse.ArgumentParser()
        parser.add_argument("--quality", type=float, required=True)
        parser.add_argument("--epochs", type=int, default=8)
        parser.add_argument("--pause", type=float, default=0.5)
        args = parser.parse_args()
        for epoch in range(1, args.epochs + 1):
            time.sleep(args.pause / args.quality)
            mlflow.log_metric("score", args.quality * epoch, step=epoch)
    """,
    # writes to a named output
    "out.py": """
        import argparse, pathlib
        import mlflow
        parser = argparse.ArgumentParser()
        parser.add_argument("--r", type=float, required=True)
        parser.add_argument("--out", required=True)
        args = parser.parse_args()
        pathlib.Path(args.out, "r.txt").write_text(str(args.r))
        mlflow.log_metric("score", args.r)
    """,
    # never logs the primary metric
    "silent.py": """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, required=True)
        print("trained, but forgot to log")
    """,
}


def write_trial_scripts(folder):
    folder.mkdir()
    for name, text in TRIAL_SCRIPTS.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


@pytest.fixture
def trial_code(tmp_path):
    return write_trial_scripts(tmp_path / "trials")


@pytest.fixture(scope="module", autouse=True)
def timed_out_sweep(tmp_path_factory):
    """A sweep whose timeout passes while its first trial runs. Azure counts sweep timeouts in whole minutes
    (the SDK rounds 5 s up to 60 s), so it starts before this module's other tests and is checked last."""
    root = tmp_path_factory.mktemp("timeout")
    client = LocalMLClient(root / "ws")
    job = trial_job(write_trial_scripts(root / "trials"), "curve.py", quality=1.0, pause=20.0)
    sweep = job(quality=Choice(values=[1.0, 0.5])).sweep(sampling_algorithm="grid", primary_metric="score", goal="Maximize")
    sweep.set_limits(max_total_trials=2, max_concurrent_trials=1, timeout=5, trial_timeout=600)
    name = client.jobs.create_or_update(sweep).name
    yield client, name
    client.jobs.begin_cancel(name).result(timeout=60)  # if a test stopped early: the sweep takes its trials with it


def trial_job(code, script: str, **inputs):
    arguments = " ".join(f"--{name} ${{{{inputs.{name}}}}}" for name in inputs)
    return command(code=str(code), command=f"python {script} {arguments}", inputs=inputs, environment=ENV, experiment_name="sweeps")


def run_sweep(ml_client, helpers, sweep):
    """Submit ``sweep``, wait for it, and return (the parent job, its trials in launch order)."""
    name = ml_client.jobs.create_or_update(sweep).name
    helpers.wait_for_status(ml_client, name, timeout=SWEEP_TIMEOUT)
    return ml_client.jobs.get(name), trials_of(ml_client, name)


def trials_of(ml_client, name):
    return sorted(ml_client.jobs.list(parent_job_name=name), key=lambda job: int(job.name.rsplit("_", 1)[1]))


def trial_params(ml_client, trial) -> dict:
    return ml_client._workspace.tracking.client.get_run(trial.name).data.params


def metric_history(ml_client, trial, metric: str) -> list[float]:
    history = ml_client._workspace.tracking.client.get_metric_history(trial.name, metric)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.slow
def test_grid_example_tries_each_reg_rate_once_and_registers_the_best_trials_model(ml_client, trial_code, helpers):
    job = trial_job(trial_code, "reg.py", reg_rate=0.01)
    sweep = job(reg_rate=Choice(values=[0.01, 0.1, 1])).sweep(
        sampling_algorithm="grid", primary_metric="training_accuracy_score", goal="Maximize"
    )
    sweep.set_limits(max_total_trials=10, max_concurrent_trials=3)

    parent, trials = run_sweep(ml_client, helpers, sweep)

    assert parent.status == "Completed", parent.properties["localml.error"]
    assert type(parent).__name__ == "SweepJob"
    assert [t.name for t in trials] == [f"{parent.name}_{i}" for i in range(3)]  # grid size, not max_total_trials
    assert all(t.status == "Completed" for t in trials)
    rates = {trial.name: float(trial_params(ml_client, trial)["reg_rate"]) for trial in trials}
    assert sorted(rates.values()) == [0.01, 0.1, 1.0]
    best = parent.properties["best_child_run_id"]
    assert rates[best] == 0.1
    assert float(parent.properties["best_score"]) == pytest.approx(0.9)

    model = ml_client.models.create_or_update(
        Model(name="reg-model", path=f"azureml://jobs/{best}/outputs/artifacts/paths/model/", type="custom_model")
    )
    stored = ml_client._workspace.resolve_uri(model.path)
    assert (stored / "weights.txt").read_text() == "reg_rate=0.1"
    assert model.job_name == best


def test_each_trial_writes_its_own_named_outputs(ml_client, trial_code, helpers):
    job = command(
        code=str(trial_code), command="python out.py --r ${{inputs.r}} --out ${{outputs.model}}", inputs={"r": 0.1},
        outputs={"model": Output(type="uri_folder")}, environment=ENV, experiment_name="sweeps",
    )
    sweep = job(r=Choice(values=[0.1, 0.5])).sweep(sampling_algorithm="grid", primary_metric="score", goal="Maximize")
    parent, trials = run_sweep(ml_client, helpers, sweep)
    assert parent.status == "Completed", parent.properties["localml.error"]
    written = {t.name: (ml_client._workspace.resolve_uri(f"azureml://jobs/{t.name}/outputs/model") / "r.txt").read_text() for t in trials}
    assert sorted(written.values()) == ["0.1", "0.5"]
    assert written[parent.properties["best_child_run_id"]] == "0.5"


@pytest.mark.slow
def test_random_and_sobol_honour_max_total_trials_and_sobol_repeats_its_configurations(ml_client, trial_code, helpers):
    space = {"x": Uniform(min_value=0, max_value=1), "y": Choice(values=[0.2, 0.5, 0.7, 0.9])}
    names = {}
    sobol = RandomSamplingAlgorithm(rule="sobol", seed=7)
    for label, sampling in (("sobol-a", sobol), ("sobol-b", sobol), ("random", "random")):
        sweep = trial_job(trial_code, "smooth.py", x=0.5, y=0.5)(**space).sweep(
            sampling_algorithm=sampling, primary_metric="score", goal="Maximize"
        )
        sweep.set_limits(max_total_trials=2, max_concurrent_trials=2)
        names[label] = ml_client.jobs.create_or_update(sweep).name
    configurations = {}
    for label, name in names.items():
        assert helpers.wait_for_status(ml_client, name, timeout=SWEEP_TIMEOUT) == "Completed"
        trials = trials_of(ml_client, name)
        assert len(trials) == 2, label
        configurations[label] = [trial_params(ml_client, t) for t in trials]
        for params in configurations[label]:
            assert 0 <= float(params["x"]) <= 1 and float(params["y"]) in (0.2, 0.5, 0.7, 0.9)
    assert configurations["sobol-a"] == configurations["sobol-b"]
    assert len({p["x"] for p in configurations["sobol-a"]}) == 2


@pytest.mark.slow
def test_a_bayesian_sweep_learns_from_its_trials_and_nears_the_optimum(ml_client, trial_code, helpers):
    # one trial at a time: each configuration then follows from all earlier results, and with localml's
    # default seed the sweep is reproducible (concurrent tells arrive in timing order). Random sampling
    # lands within 0.1 of the optimum (score > 0.99) in 8 trials about one time in five; the GP against
    # random at the same budget is compared in test_sweep_bayesian.py, without jobs.
    space = {"x": Uniform(min_value=0, max_value=1), "y": Uniform(min_value=0, max_value=1)}
    sweep = trial_job(trial_code, "smooth.py", x=0.5, y=0.5)(**space).sweep(
        sampling_algorithm="bayesian", primary_metric="score", goal="Maximize",
    )
    sweep.set_limits(max_total_trials=8, max_concurrent_trials=1)
    name = ml_client.jobs.create_or_update(sweep).name
    assert helpers.wait_for_status(ml_client, name, timeout=SWEEP_TIMEOUT) == "Completed"
    assert len(trials_of(ml_client, name)) == 8
    assert float(ml_client.jobs.get(name).properties["best_score"]) > 0.99


POLICIES = {
    "bandit": BanditPolicy(slack_factor=0.2, evaluation_interval=1),
    "median_stopping": MedianStoppingPolicy(evaluation_interval=1, delay_evaluation=1),
    "truncation_selection": TruncationSelectionPolicy(truncation_percentage=34, evaluation_interval=1),
}


# bandit in the quick tier; the other policies, which take the same path to a stop, in the slow one
@pytest.mark.parametrize("policy", [p if p == "bandit" else pytest.param(p, marks=pytest.mark.slow) for p in sorted(POLICIES)])
def test_early_termination_stops_the_weak_trial_and_only_it(ml_client, trial_code, helpers, policy):
    # Curves score = q * epoch for q in (1.0, 0.9, 0.2), all three trials running at once, the weak one
    # logging 5x more slowly. Each policy's rule stops q = 0.2 and never the others:
    # bandit (slack 0.2): 0.2 < 1.0 / 1.2, but 0.9 >= 1.0 / 1.2;
    # median stopping (delay 1): 0.2 * k is below the median of the others' running averages
    # (>= 0.9 * (k + 1) / 2) from k = 2 on, while 0.9 * k is at least 0.75x the best running average from k = 2;
    # truncation 34%: of 3 trials the lowest is cut, of 2 none (and the weak one is never ahead of the others).
    sweep = trial_job(trial_code, "curve.py", quality=1.0)(quality=Choice(values=[1.0, 0.9, 0.2])).sweep(
        sampling_algorithm="grid", primary_metric="score", goal="Maximize", early_termination_policy=POLICIES[policy]
    )
    sweep.set_limits(max_total_trials=3, max_concurrent_trials=3)

    parent, trials = run_sweep(ml_client, helpers, sweep)

    assert parent.status == "Completed", parent.properties["localml.error"]
    by_quality = {float(trial_params(ml_client, t)["quality"]): t for t in trials}
    assert by_quality[0.2].status == "Canceled"
    assert len(metric_history(ml_client, by_quality[0.2], "score")) < 8  # really stopped, not left to finish
    for quality in (1.0, 0.9):
        assert by_quality[quality].status == "Completed", quality
        assert len(metric_history(ml_client, by_quality[quality], "score")) == 8
    assert parent.properties["best_child_run_id"] == by_quality[1.0].name
    assert float(parent.properties["best_score"]) == pytest.approx(8.0)


def test_a_trial_that_never_logs_the_primary_metric_fails_naming_it(ml_client, trial_code, helpers):
    sweep = trial_job(trial_code, "silent.py", lr=0.1)(lr=Choice(values=[0.1, 0.2])).sweep(
        sampling_algorithm="grid", primary_metric="val_auc", goal="Maximize"
    )
    parent, trials = run_sweep(ml_client, helpers, sweep)
    assert [t.status for t in trials] == ["Failed", "Failed"]
    for trial in trials:
        assert "val_auc" in trial.properties["localml.error"]
    assert parent.status == "Failed"
    assert "val_auc" in parent.properties["localml.error"]


def test_trials_share_the_compute_and_a_canceled_sweep_stops_its_trials(ml_client, trial_code, helpers):
    ml_client.compute.begin_create_or_update(AmlCompute(name="one-node", size="STANDARD_DS3_V2", max_instances=1)).result()
    job = trial_job(trial_code, "curve.py", quality=1.0, pause=0.3)
    job.compute = "one-node"
    sweep = job(quality=Choice(values=[1.0, 0.5, 0.2])).sweep(sampling_algorithm="grid", primary_metric="score", goal="Maximize")
    sweep.set_limits(max_total_trials=3, max_concurrent_trials=3)
    name = ml_client.jobs.create_or_update(sweep).name

    helpers.wait_for(lambda: len(trials_of(ml_client, name)) == 3, what="three trials submitted")
    first = helpers.wait_for(
        lambda: next((t for t in trials_of(ml_client, name) if t.status == "Running"), None), what="a trial to run"
    )
    others = [t for t in trials_of(ml_client, name) if t.name != first.name]
    assert all(t.status in ("NotStarted", "Queued") for t in others)  # one instance: the rest wait for it

    ml_client.jobs.begin_cancel(name).result(timeout=60)
    for trial in trials_of(ml_client, name):
        assert helpers.wait_for_status(ml_client, trial.name) == "Canceled"
    assert ml_client.jobs.get(name).status == "Canceled"


def _sweep_from(code, space, limits=None, **settings):
    job = trial_job(code, "smooth.py", x=0.5, y=0.5)
    sweep = job(**space).sweep(**{"primary_metric": "score", "goal": "Maximize", **settings})
    if limits:
        sweep.set_limits(**limits)
    return sweep


def _unused_parameter_sweep(code):
    job = command(code=str(code), command="python smooth.py --x ${{inputs.x}} --y 0.5", inputs={"x": 0.5, "depth": 3}, environment=ENV)
    return job(depth=Choice(values=[2, 4])).sweep(sampling_algorithm="random", primary_metric="score", goal="Maximize")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda code: _sweep_from(code, {"x": Uniform(min_value=0, max_value=1)}, sampling_algorithm="grid"), "grid"),
        (lambda code: _sweep_from(code, {"x": Normal(mu=0, sigma=1)}, sampling_algorithm="bayesian"), "bayesian"),
        (lambda code: _sweep_from(code, {"x": Choice(values=[])}, sampling_algorithm="random"), "x"),
        (lambda code: _sweep_from(code, {"x": Uniform(min_value=1, max_value=0)}, sampling_algorithm="random"), "x"),
        (lambda code: _sweep_from(code, {}, sampling_algorithm="random"), "search_space is empty"),
        (lambda code: _unused_parameter_sweep(code), "never uses"),
        (lambda code: _sweep_from(code, {"x": Choice(values=[0.1])}, sampling_algorithm="random", primary_metric=None), "primary_metric"),
        (lambda code: _sweep_from(code, {"x": Choice(values=[0.1])}, sampling_algorithm="random", limits={"timeout": 60}), "max_total_trials"),
    ],
    ids=["grid-over-uniform", "bayesian-over-normal", "empty-choice", "reversed-bounds", "empty-space", "unused-parameter", "no-primary-metric", "limits-without-max-trials"],
)
def test_bad_sweeps_are_rejected_before_any_trial(ml_client, trial_code, build, message):
    with pytest.raises(LocalMLValidationError, match=message) as error:
        ml_client.jobs.create_or_update(build(trial_code))
    assert len(str(error.value)) > 40  # says what to do, not just what failed
    assert list(ml_client.jobs.list()) == []


def test_the_sweep_timeout_cancels_its_running_trial_and_launches_no_more(timed_out_sweep, helpers):
    client, name = timed_out_sweep
    helpers.wait_for_status(client, name, timeout=SWEEP_TIMEOUT)
    parent, trials = client.jobs.get(name), trials_of(client, name)
    assert [t.status for t in trials] == ["Canceled"]  # the second trial never started
    assert trials[0].limits.timeout == 600  # each trial runs under the sweep's trial_timeout
    assert parent.status == "Failed"
    assert "timeout" in parent.properties["localml.error"]
