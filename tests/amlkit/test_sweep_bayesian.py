"""amlkit.sweep.bayesian: the Gaussian-process sampler behind Azure's ``bayesian`` sweep sampling.

Studies are driven in-process exactly as the sweep driver drives them: ``study.ask()``, then
``space.suggest(trial)``, then ``study.tell(trial, value)``. Search spaces are in the SDK's dict form.
"""

from __future__ import annotations

import itertools
import math
import statistics

import optuna
import pytest

from amlkit.sweep.bayesian import GaussianProcessSampler
from amlkit.sweep.space import SearchSpace, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

UNIT_SQUARE = {
    "x": {"type": "uniform", "min_value": 0.0, "max_value": 1.0},
    "y": {"type": "uniform", "min_value": 0.0, "max_value": 1.0},
}


def smooth(config: dict) -> float:
    """A smooth objective on the unit square, with its maximum 1 at (0.3, 0.7)."""
    return 1 - (config["x"] - 0.3) ** 2 - (config["y"] - 0.7) ** 2


def run(space: SearchSpace, sampler: optuna.samplers.BaseSampler, objective, n_trials: int):
    """The study and the configurations it gave, asked and told one trial at a time as the driver does."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    configs = []
    for _ in range(n_trials):
        trial = study.ask()
        configs.append(space.suggest(trial))
        study.tell(trial, objective(configs[-1]))
    return study, configs


def test_make_sampler_gives_the_gp_sampler_for_bayesian():
    space = SearchSpace(UNIT_SQUARE, "bayesian")
    assert isinstance(make_sampler("bayesian", 0, space), GaussianProcessSampler)
    assert make_sampler("bayesian", 0, space)._n_startup_trials == 5
    assert make_sampler("bayesian", 0, space, max_total_trials=12)._n_startup_trials == 3
    assert make_sampler("bayesian", 0, space, max_total_trials=2)._n_startup_trials == 1


@pytest.mark.slow
def test_gp_beats_random_sampling_at_a_sweep_budget():
    # Measured over these 20 seeds at 12 trials (3 random start-up trials): the GP wins 20 of 20, mean best
    # 0.99996 vs random's 0.980, worst seed 0.9997. Optuna's TPE (same start-up) beats random in only 9 of 20
    # here, mean best 0.979, which is why bayesian sampling does not use it.
    space = SearchSpace(UNIT_SQUARE, "bayesian")
    gp, rand = [], []
    for seed in range(20):
        gp.append(run(space, make_sampler("bayesian", seed, space, max_total_trials=12), smooth, 12)[0].best_value)
        rand.append(run(space, optuna.samplers.RandomSampler(seed), smooth, 12)[0].best_value)
    wins = sum(g > r for g, r in zip(gp, rand))
    assert wins >= 16, (wins, gp, rand)
    assert statistics.mean(gp) >= 0.995, gp
    assert statistics.mean(gp) - statistics.mean(rand) >= 0.01, (statistics.mean(gp), statistics.mean(rand))


def test_choice_and_quniform_values_stay_in_the_space():
    space = SearchSpace(
        {
            "activation": {"type": "choice", "values": ["relu", "tanh", 3]},
            "width": {"type": "quniform", "min_value": 16, "max_value": 128, "q": 16},
            "dropout": {"type": "quniform", "min_value": 0.0, "max_value": 0.5, "q": 0.1},
            # a nested choice: its parameters are outside the shared space and drawn at random
            "model": {"type": "choice", "values": [
                {"model": "svm", "C": {"type": "uniform", "min_value": 0.1, "max_value": 10.0}}, "tree",
            ]},
        },
        "bayesian",
    )

    def objective(config: dict) -> float:
        score = {"relu": 1.0, "tanh": 0.5, 3: 0.0}[config["activation"]] - abs(config["width"] - 64) / 64
        return score - config["dropout"] + config.get("C", 5.0) / 10

    study = optuna.create_study(direction="maximize", sampler=make_sampler("bayesian", 7, space, max_total_trials=15))
    configs, proposed = [], []
    for _ in range(15):
        trial = study.ask()
        configs.append(space.suggest(trial))
        proposed.append(set(trial.relative_params))  # what the GP proposed (the rest is drawn at random)
        study.tell(trial, objective(configs[-1]))
    for config in configs:
        assert config["activation"] in ("relu", "tanh", 3)
        assert config["width"] in range(16, 129, 16) and isinstance(config["width"], int)
        assert config["dropout"] in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
        assert config["model"] in ("svm", "tree")
        assert ("C" in config) == (config["model"] == "svm")
        if "C" in config:
            assert 0.1 <= config["C"] <= 10.0
    # after the 3 random start-up trials the GP proposes the parameters every trial has
    assert proposed[:3] == [set()] * 3
    assert proposed[3:] == [{"activation", "width", "dropout", "model"}] * 12
    assert study.best_value > 1.0


def test_the_same_seed_gives_the_same_configurations():
    space = SearchSpace(
        {**UNIT_SQUARE, "c": {"type": "choice", "values": ["a", "b", "c"]}}, "bayesian"
    )

    def objective(config: dict) -> float:
        return smooth(config) + (config["c"] == "b")

    def configurations(seed: int) -> list[dict]:
        return run(space, make_sampler("bayesian", seed, space, max_total_trials=10), objective, 10)[1]

    first = configurations(3)
    assert configurations(3) == first
    assert configurations(4) != first


def test_trials_asked_together_get_different_configurations():
    choices = {name: {"type": "choice", "values": [1, 2, 3]} for name in ("a", "b")}
    for raw in (choices, UNIT_SQUARE):
        space = SearchSpace(raw, "bayesian")
        study = optuna.create_study(direction="maximize", sampler=make_sampler("bayesian", 0, space))
        for _ in range(5):  # the start-up trials: from here on the GP proposes
            trial = study.ask()
            study.tell(trial, -sum((value - 2) ** 2 for value in space.suggest(trial).values()))
        configs = []
        for _ in range(3):  # asked before any of them is told, as concurrent trials are
            trial = study.ask()
            assert trial.relative_params
            configs.append(space.suggest(trial))
        points = [tuple(config.values()) for config in configs]
        assert len(set(points)) == 3, points
        assert min(math.dist(p, q) for p, q in itertools.combinations(points, 2)) > 0.05, points
