"""amlkit.sweep.space: Azure's sweep expressions sampled through Optuna, from the SDK's own dict forms."""

from __future__ import annotations

import math
import statistics

import optuna
import pytest
from azure.ai.ml import command
from azure.ai.ml.sweep import (
    BayesianSamplingAlgorithm,
    Choice,
    GridSamplingAlgorithm,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    RandomSamplingAlgorithm,
    Uniform,
)

from amlkit.errors import SpecError, UnsupportedFeatureError
from amlkit.sweep.bayesian import GaussianProcessSampler
from amlkit.sweep.space import GRID_PARAM, SearchSpace, make_sampler, parse_sampling

optuna.logging.set_verbosity(optuna.logging.WARNING)

ENV = "AzureML-sklearn-1.5@latest"


def sweep_dict(sampling="random", **space) -> dict:
    """The SDK's dict form of a sweep over ``space`` (what the driver reads from ``sweep_job._to_dict()``)."""
    job = command(command="python train.py", environment=ENV, inputs={name: 1 for name in space})
    return job(**space).sweep(sampling_algorithm=sampling, primary_metric="m", goal="Maximize")._to_dict()


def space_of(sampling="random", **expressions) -> dict:
    return sweep_dict(sampling, **expressions)["search_space"]


def sample(space: SearchSpace, sampling: str, seed: int | None, n: int) -> list[dict]:
    """``n`` configurations from a study driven by ``make_sampler``, asked and told as the driver does."""
    study = optuna.create_study(sampler=make_sampler(sampling, seed, space))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return configs


def test_sdk_dict_forms_are_the_input_format():
    assert space_of(
        lr=LogUniform(-6, -1), it=Choice([50, 100]), n=QNormal(0, 1, 2), k=Randint(3)
    ) == {
        "lr": {"type": "loguniform", "min_value": -6, "max_value": -1},
        "it": {"type": "choice", "values": [50, 100]},
        "n": {"type": "qnormal", "mu": 0, "sigma": 1, "q": 2},
        "k": {"type": "randint", "upper": 3},
    }


def test_every_expression_has_azures_range_and_type():
    space = SearchSpace(
        space_of(
            choice=Choice(["adam", 2, 0.5]),
            randint=Randint(5),
            uniform=Uniform(-1, 2),
            quniform=QUniform(0, 10, 2),
            quniform_frac=QUniform(0, 1, 0.1),
            loguniform=LogUniform(-6, -1),
            qloguniform=QLogUniform(0, 3, 1),
            normal=Normal(10, 2),
            qnormal=QNormal(0, 1, 0.5),
            lognormal=LogNormal(0, 0.5),
            qlognormal=QLogNormal(1, 0.5, 1),
        ),
        "random",
    )
    configs = sample(space, "random", 0, 300)
    column = {name: [config[name] for config in configs] for name in configs[0]}

    assert set(column["choice"]) == {"adam", 2, 0.5}
    assert {type(v) for v in column["choice"]} == {str, int, float}
    assert set(column["randint"]) == {0, 1, 2, 3, 4} and all(type(v) is int for v in column["randint"])
    assert all(type(v) is float and -1 <= v <= 2 for v in column["uniform"])
    assert set(column["quniform"]) <= {0, 2, 4, 6, 8, 10} and all(type(v) is int for v in column["quniform"])
    assert len(set(column["quniform"])) == 6
    assert all(type(v) is float and v == round(v, 1) and 0 <= v <= 1 for v in column["quniform_frac"])
    # LogUniform's bounds are natural logs: values in [e^-6, e^-1], uniform in log space
    assert all(type(v) is float and math.exp(-6) <= v <= math.exp(-1) for v in column["loguniform"])
    assert statistics.fmean(math.log(v) for v in column["loguniform"]) == pytest.approx(-3.5, abs=0.3)
    assert all(type(v) is int and 1 <= v <= 20 for v in column["qloguniform"])  # round(e^0)..round(e^3)
    assert all(type(v) is float for v in column["normal"])
    assert statistics.fmean(column["normal"]) == pytest.approx(10, abs=0.4)
    assert statistics.stdev(column["normal"]) == pytest.approx(2, rel=0.15)
    assert all(type(v) is float and (v * 2).is_integer() for v in column["qnormal"])
    assert all(type(v) is float and v > 0 for v in column["lognormal"])
    assert statistics.fmean(math.log(v) for v in column["lognormal"]) == pytest.approx(0, abs=0.1)
    assert all(type(v) is int and v >= 0 for v in column["qlognormal"])


def test_each_expression_maps_the_optuna_value_as_azure_defines_it():
    space = SearchSpace(
        space_of(
            q=QUniform(0, 10, 3), half=QUniform(0, 1, 0.1), lu=LogUniform(-6, -1), qlu=QLogUniform(0, 3, 1),
            n=Normal(10, 2), tail=Normal(0, 1), ln=LogNormal(1, 1), qn=QNormal(0, 1, 0.25), k=Randint(4), c=Choice([5, 6]),
        ),
        "random",
    )
    drawn = space.suggest(optuna.trial.FixedTrial({
        "q": 4.4, "half": 0.31, "lu": -1.0, "qlu": 1.0, "n": 0.975, "tail": 0.0, "ln": 0.5, "qn": 0.8, "k": 3, "c": 1,
    }))
    assert drawn["q"] == 3 and type(drawn["q"]) is int  # round(4.4 / 3) * 3
    assert drawn["half"] == 0.3  # round(3.1) * 0.1 on q's decimal grid, not 0.30000000000000004
    assert drawn["lu"] == pytest.approx(math.exp(-1))
    assert drawn["qlu"] == 3  # round(e / 1) * 1
    assert drawn["n"] == pytest.approx(10 + 2 * 1.959964, abs=1e-5)  # p = 0.975 -> mu + 1.96 sigma
    assert math.isfinite(drawn["tail"]) and drawn["tail"] < -5  # p clipped to 1e-9, not -inf
    assert drawn["ln"] == pytest.approx(math.e)  # p = 0.5 -> exp(mu)
    assert drawn["qn"] == 0.75 and type(drawn["qn"]) is float  # round(0.8416 / 0.25) * 0.25
    assert drawn["k"] == 3 and drawn["c"] == 6  # a choice draws the index of its value


def test_the_optuna_distributions_are_the_ones_documented():
    space = SearchSpace(space_of(c=Choice([1, 2, 3]), k=Randint(4), lu=LogUniform(-6, -1), n=Normal(5, 1)), "random")
    study = optuna.create_study(sampler=make_sampler("random", 0, space))
    trial = study.ask()
    space.suggest(trial)
    dists = study.trials[0].distributions
    assert dists["c"] == optuna.distributions.CategoricalDistribution([0, 1, 2])
    assert dists["k"] == optuna.distributions.IntDistribution(0, 3)
    assert dists["lu"] == optuna.distributions.FloatDistribution(-6, -1)
    assert dists["n"] == optuna.distributions.FloatDistribution(0, 1)


def test_nested_choice_of_dicts_merges_the_chosen_dicts_parameters():
    space = SearchSpace(
        space_of(
            model=Choice([
                {"model": "svm", "C": Uniform(0.1, 10)},
                {"model": "tree", "depth": Randint(8), "criterion": Choice(["gini", "entropy"])},
                "dummy",
            ]),
            seed=Choice([1, 2]),
        ),
        "random",
    )
    configs = sample(space, "random", 1, 120)
    kinds = {config["model"] for config in configs}
    assert kinds == {"svm", "tree", "dummy"}
    for config in configs:
        if config["model"] == "svm":
            assert set(config) == {"model", "C", "seed"} and 0.1 <= config["C"] <= 10
        elif config["model"] == "tree":
            assert set(config) == {"model", "depth", "criterion", "seed"}
            assert config["depth"] in range(8) and config["criterion"] in ("gini", "entropy")
        else:
            assert set(config) == {"model", "seed"}

    # nested Optuna parameters are prefixed with the choice's name and the value's index
    assert space.suggest(optuna.trial.FixedTrial({"model": 1, "model.1.depth": 5, "model.1.criterion": 0, "seed": 0})) == {
        "model": "tree", "depth": 5, "criterion": "gini", "seed": 1,
    }


def test_nested_parameters_that_collide_with_another_parameter_are_rejected():
    with pytest.raises(SpecError, match="'lr'.*Rename"):
        SearchSpace(space_of(opt=Choice([{"lr": Uniform(0, 1)}, {"momentum": Uniform(0, 1)}]), lr=Choice([1])), "random")


def test_grid_tries_every_combination_of_3x2_choices_exactly_once():
    space = SearchSpace(space_of("grid", a=Choice([1, 2, 3]), b=Choice(["x", "y"])), "grid")
    assert space.grid_size() == 6
    study = optuna.create_study(sampler=make_sampler("grid", None, space))
    trials = [study.ask() for _ in range(6)]  # asked together, as concurrent trials are
    configs = [space.suggest(trial) for trial in trials]
    for trial in trials:
        study.tell(trial, 0.0)
    assert sorted((c["a"], c["b"]) for c in configs) == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]
    assert set(study.trials[0].params) == {GRID_PARAM}


def test_grid_over_nested_dicts_tries_each_leaf_combination_once():
    space = SearchSpace(
        space_of("grid", m=Choice([{"m": "a", "d": Choice([1, 2, 3])}, "b"]), s=Choice([True, False])), "grid"
    )
    assert space.grid_size() == (3 + 1) * 2
    configs = sample(space, "grid", 7, 8)
    expected = [{"m": "a", "d": d, "s": s} for d in (1, 2, 3) for s in (True, False)]
    expected += [{"m": "b", "s": s} for s in (True, False)]
    as_items = lambda config: tuple(sorted(config.items()))  # noqa: E731
    assert sorted(map(as_items, configs)) == sorted(map(as_items, expected))


def test_grid_over_a_uniform_is_rejected_naming_the_parameter():
    with pytest.raises(SpecError, match="'lr' is uniform, but grid sampling supports only choice"):
        SearchSpace(space_of(batch=Choice([16, 32]), lr=Uniform(0.01, 0.1)), "grid")
    with pytest.raises(SpecError, match=r"'m\[0\].lr'"):  # inside a nested dict too
        SearchSpace(space_of(m=Choice([{"lr": Uniform(0.01, 0.1)}])), "grid")


def test_bayesian_accepts_choice_uniform_quniform_and_rejects_normal():
    space = SearchSpace(space_of(a=Choice([1, 2]), b=Uniform(0, 1), c=QUniform(0, 10, 1)), "bayesian")
    configs = sample(space, "bayesian", 0, 8)
    assert all(0 <= c["b"] <= 1 and c["a"] in (1, 2) for c in configs)
    with pytest.raises(SpecError, match="'noise' is normal, but bayesian sampling supports only"):
        SearchSpace(space_of(a=Choice([1, 2]), noise=Normal(0, 1)), "bayesian")
    with pytest.raises(SpecError, match="'k' is randint"):
        SearchSpace(space_of(k=Randint(3)), "bayesian")


@pytest.mark.parametrize("space", [{}, None, [("lr", {"type": "uniform"})]])
def test_empty_or_non_dict_space_is_rejected(space):
    with pytest.raises(SpecError, match="search_space"):
        SearchSpace(space, "random")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (Uniform(1, 0), r"'p' \(uniform\) has min_value=1 >= max_value=0. Give a min_value below max_value"),
        (LogUniform(-1, -1), r"'p' \(loguniform\) has min_value=-1 >= max_value=-1"),
        (QUniform(0, 1, 0), r"'p' \(quniform\) has q=0. Give a quantization step q > 0"),
        (QLogNormal(0, 1, -1), r"'p' \(qlognormal\) has q=-1"),
        (Normal(0, 0), r"'p' \(normal\) has sigma=0. Give a standard deviation sigma > 0"),
        (LogNormal(0, -1), r"'p' \(lognormal\) has sigma=-1"),
        (Choice([]), r"'p' \(choice\) has no values"),
        (Randint(0), r"'p' \(randint\) has upper=0"),
        (LogUniform(1, 1000), r"'p' \(loguniform\).*natural logs"),
    ],
)
def test_invalid_expressions_are_rejected_naming_the_parameter(expression, message):
    with pytest.raises(SpecError, match=message):
        SearchSpace(space_of(p=expression), "random")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "beta", "a": 1}, "'p' has unknown expression type 'beta'. Use one of"),
        ({"type": "uniform", "min_value": 0}, r"'p' \(uniform\) is missing max_value"),
        ({"type": "uniform", "min_value": 0, "max_value": 1, "log": True}, "unexpected field"),
        ({"type": "uniform", "min_value": "0", "max_value": 1}, "not a finite number"),
        (3, "'p' is 3, not a sweep expression"),
    ],
)
def test_malformed_expressions_are_rejected(spec, message):
    with pytest.raises(SpecError, match=message):
        SearchSpace({"p": spec}, "random")


def test_unknown_sampling_is_unsupported():
    with pytest.raises(UnsupportedFeatureError, match="sampling algorithm 'hyperband'"):
        SearchSpace(space_of(a=Choice([1])), "hyperband")
    with pytest.raises(UnsupportedFeatureError):
        make_sampler("hyperband", None, SearchSpace(space_of(a=Choice([1])), "random"))


def test_make_sampler_needs_a_space_built_for_the_same_sampling():
    with pytest.raises(SpecError, match="built for 'random'"):
        make_sampler("grid", None, SearchSpace(space_of(a=Choice([1])), "random"))


def test_make_sampler_gives_the_documented_samplers():
    space = lambda sampling: SearchSpace(space_of(a=Choice([1, 2])), sampling)  # noqa: E731
    assert isinstance(make_sampler("grid", None, space("grid")), optuna.samplers.GridSampler)
    assert isinstance(make_sampler("random", 1, space("random")), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("sobol", None, space("sobol")), optuna.samplers.QMCSampler)
    bayesian = make_sampler("bayesian", None, space("bayesian"), max_total_trials=8)
    assert isinstance(bayesian, GaussianProcessSampler)
    assert bayesian._n_startup_trials == 2  # a quarter of max_total_trials, below the default 5


def test_sobol_is_reproducible_by_seed():
    space = SearchSpace(space_of(x=Uniform(0, 1), n=Normal(0, 1), c=Choice([1, 2, 3])), "sobol")
    first = sample(space, "sobol", 5, 12)
    assert sample(space, "sobol", 5, 12) == first
    assert sample(space, "sobol", 6, 12) != first
    assert sample(space, "sobol", None, 12) == sample(space, "sobol", 0, 12)  # no seed: localml uses 0
    # a Sobol sequence covers the interval evenly: 8 points after the first, one in each eighth
    assert sorted(int(c["x"] * 8) for c in first[1:9]) == list(range(8))


def test_random_honors_the_seed():
    space = SearchSpace(space_of(x=Uniform(0, 1), k=Randint(100)), "random")
    first = sample(space, "random", 3, 10)
    assert sample(space, "random", 3, 10) == first
    assert sample(space, "random", 4, 10) != first


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("random", ("random", None)),
        ("grid", ("grid", None)),
        ("bayesian", ("bayesian", None)),
        (RandomSamplingAlgorithm(seed=3, rule="sobol"), ("sobol", 3)),
        (RandomSamplingAlgorithm(rule="sobol"), ("sobol", None)),
        (RandomSamplingAlgorithm(seed=7), ("random", 7)),
        (RandomSamplingAlgorithm(seed=7, rule="random", logbase="e"), ("random", 7)),
        (GridSamplingAlgorithm(), ("grid", None)),
        (BayesianSamplingAlgorithm(), ("bayesian", None)),
    ],
)
def test_parse_sampling_reads_the_sdk_forms(algorithm, expected):
    form = sweep_dict(algorithm, a=Choice([1]))["sampling_algorithm"]
    assert parse_sampling(form) == expected
    assert parse_sampling(algorithm) == expected  # the SDK object itself


def test_parse_sampling_other_forms():
    assert parse_sampling("sobol") == ("sobol", None)
    assert parse_sampling(None) == ("random", None)  # Azure's default
    with pytest.raises(UnsupportedFeatureError, match="logbase=10"):
        parse_sampling(sweep_dict(RandomSamplingAlgorithm(logbase=10), a=Choice([1]))["sampling_algorithm"])
    with pytest.raises(UnsupportedFeatureError, match="'hyperband'"):
        parse_sampling({"type": "hyperband"})
    with pytest.raises(SpecError, match="seed"):
        parse_sampling({"type": "random", "seed": -1})
