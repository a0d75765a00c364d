"""An Azure ML sweep's search space, checked at construction and sampled through Optuna's ``suggest_*`` API.

The input is the SDK's own dict form of a sweep job's ``search_space`` (``sweep_job._to_dict()["search_space"]``),
one entry per parameter, for example::

    {"learning_rate": {"type": "loguniform", "min_value": -6, "max_value": -1},
     "max_iter": {"type": "choice", "values": [50, 100]}}

Every value is drawn through an Optuna ``Trial`` so that the study's sampler (grid, random, Sobol or a Gaussian process)
decides it; the expression then maps the Optuna value to Azure's semantics:

* ``Choice(values)``: one of ``values`` (Optuna: ``suggest_categorical`` over the value indices).
* ``Randint(upper)``: an integer in ``[0, upper)`` (``suggest_int(0, upper - 1)``).
* ``Uniform(min_value, max_value)``: ``uniform(min, max)`` (``suggest_float(min, max)``).
* ``QUniform(min_value, max_value, q)``: ``round(uniform(min, max) / q) * q``.
* ``LogUniform(min_value, max_value)``: ``exp(uniform(min, max))``: the bounds are natural logs, values lie
  in ``[e**min, e**max]`` (``suggest_float(min, max)``, then ``exp``).
* ``QLogUniform(min_value, max_value, q)``: ``round(exp(uniform(min, max)) / q) * q``.
* ``Normal(mu, sigma)``: ``normal(mu, sigma)``.
* ``QNormal(mu, sigma, q)``: ``round(normal(mu, sigma) / q) * q``.
* ``LogNormal(mu, sigma)``: ``exp(normal(mu, sigma))``.
* ``QLogNormal(mu, sigma, q)``: ``round(exp(normal(mu, sigma)) / q) * q``.

Quantized values (``round`` is Python's, half to even, like NumPy's) are ints when ``q`` is a whole number
(the result then always is), else floats on ``q``'s decimal grid (``QUniform(0, 1, 0.1)`` gives ``0.3``, not
``0.30000000000000004``). Quantizing may step just outside ``[min, max]``, as in Azure.

The normal family is drawn as a probability ``p`` in ``[0, 1]`` (clipped to ``[1e-9, 1 - 1e-9]``) and mapped
through the normal quantile function, so uniform samplers (random, Sobol) give correctly distributed values.

Nested search spaces (Azure): a ``Choice`` value that is a dict is a search space of its own. Its keys are
further parameters, each a sweep expression or a constant. When that value is chosen, its parameters are
merged into the trial's parameters *in place of* the choice's own name, e.g.
``model=Choice([{"model": "svm", "C": Uniform(0.1, 10)}, {"model": "tree", "depth": Randint(8)}])`` gives
``{"model": "tree", "depth": 3}`` (the dict's own ``"model"`` key sets that parameter).

Sampling algorithms and their restrictions (Azure's rules):

* ``grid``: only ``Choice`` (nested dicts allowed, with only choices and constants inside); every leaf
  combination once.
* ``random``: every expression.
* ``sobol`` (``RandomSamplingAlgorithm(rule="sobol")``): every expression.
* ``bayesian``: only ``Choice``, ``Uniform`` and ``QUniform``.
"""

from __future__ import annotations

import copy
import math
import numbers
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist
from typing import Any

import optuna

from amlkit.errors import SpecError, UnsupportedFeatureError

#: The sampling algorithms localml runs: Azure's three, with random's ``rule="sobol"`` as its own name.
SAMPLING_ALGORITHMS = ("grid", "random", "sobol", "bayesian")
#: The expressions Azure's bayesian sampling accepts.
BAYESIAN_TYPES = frozenset({"choice", "uniform", "quniform"})
#: Expression type -> its fields, as the SDK's ``_to_dict()`` writes them.
EXPRESSION_FIELDS: dict[str, tuple[str, ...]] = {
    "choice": ("values",),
    "randint": ("upper",),
    "uniform": ("min_value", "max_value"),
    "quniform": ("min_value", "max_value", "q"),
    "loguniform": ("min_value", "max_value"),
    "qloguniform": ("min_value", "max_value", "q"),
    "normal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"),
    "qlognormal": ("mu", "sigma", "q"),
}
_SDK_NAMES = {
    "choice": "Choice(values)", "randint": "Randint(upper)", "uniform": "Uniform(min_value, max_value)",
    "quniform": "QUniform(min_value, max_value, q)", "loguniform": "LogUniform(min_value, max_value)",
    "qloguniform": "QLogUniform(min_value, max_value, q)", "normal": "Normal(mu, sigma)",
    "qnormal": "QNormal(mu, sigma, q)", "lognormal": "LogNormal(mu, sigma)", "qlognormal": "QLogNormal(mu, sigma, q)",
}
#: The Optuna parameter that carries the grid point when sampling is ``grid``.
GRID_PARAM = "grid_point"
#: Seed used for Sobol scrambling when the sweep gives none, so that a sweep is reproducible.
#: The seed of sobol and bayesian sampling when none is given (Azure's bayesian takes none): reproducible sweeps.
DEFAULT_SEED = 0
#: Bayesian sampling's random start-up trials before it models the results (at most; see ``make_sampler``).
MAX_BAYESIAN_STARTUP_TRIALS = 5

_P_CLIP = 1e-9
_MAX_EXP_ARG = 709.0  # math.exp overflows just above 709.78
_STANDARD_NORMAL = NormalDist()
_NORMAL_REACH = 6.0  # the standard normal's quantile at 1 - 1e-9 is about 6.0


@dataclass(frozen=True)
class _Const:
    value: Any


@dataclass(frozen=True)
class _Dist:
    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class _Choice:
    options: tuple[Any, ...]  # each a _Space (a nested search space) or a constant value


@dataclass(frozen=True)
class _Space:
    items: tuple[tuple[str, Any], ...]  # (name, _Const | _Dist | _Choice)


def _sampling_name(name: Any) -> str:
    if not isinstance(name, str) or name.strip().lower() not in SAMPLING_ALGORITHMS:
        raise UnsupportedFeatureError(
            f"the sampling algorithm {name!r}", f"Use one of {', '.join(SAMPLING_ALGORITHMS)}."
        )
    return name.strip().lower()


def parse_sampling(value: Any) -> tuple[str, int | None]:
    """The sampling algorithm's name and seed from the SDK's form of ``sampling_algorithm``.

    Accepts the string form (``"random"``, ``"grid"``, ``"bayesian"``, and ``"sobol"``), the dict form the SDK
    writes for ``RandomSamplingAlgorithm`` / ``GridSamplingAlgorithm`` / ``BayesianSamplingAlgorithm``
    (``{"type": "random", "seed": 3, "rule": "sobol"}``), such an SDK object itself, or None (Azure's default,
    random). ``rule="sobol"`` gives ``"sobol"``. A ``logbase`` other than ``e`` is refused
    (``UnsupportedFeatureError``): localml's log expressions use the natural logarithm, as Azure does by default.
    """
    if value is None:
        return "random", None
    if isinstance(value, str):
        return _sampling_name(value), None
    fields = _sampling_fields(value)
    name = _with_rule(_sampling_name(fields.get("type")), fields.get("rule"))
    _check_logbase(fields.get("logbase"))
    return name, _checked_seed(fields.get("seed"))


def _sampling_fields(value: Any) -> Mapping:
    """The dict form of a sampling algorithm given as a dict or an SDK object, with only the fields localml knows."""
    if not isinstance(value, Mapping):
        if not hasattr(value, "type"):
            raise SpecError(
                f"sampling_algorithm must be 'grid', 'random', 'bayesian' or a sampling algorithm object "
                f"such as RandomSamplingAlgorithm(seed=1), got {value!r}."
            )
        value = {key: getattr(value, key) for key in ("type", "seed", "rule", "logbase") if hasattr(value, key)}
    unknown = sorted(set(value) - {"type", "seed", "rule", "logbase"})
    if unknown:
        raise UnsupportedFeatureError(
            f"the sampling_algorithm field(s) {', '.join(map(repr, unknown))}",
            "Known fields: type, seed, rule, logbase.",
        )
    return value


def _with_rule(name: str, rule: Any) -> str:
    """Random sampling's ``rule``: ``"sobol"`` makes it Sobol sampling; other types take no rule."""
    if rule is None:
        return name
    rule = str(rule).strip().lower()
    if name != "random":
        raise SpecError(
            f"sampling_algorithm rule={rule!r} applies to random sampling only, but the type is {name!r}. "
            "Use RandomSamplingAlgorithm(rule=...) or remove the rule."
        )
    if rule not in ("random", "sobol"):
        raise UnsupportedFeatureError(f"the random sampling rule {rule!r}", "Use rule='random' or rule='sobol'.")
    return rule


def _check_logbase(logbase: Any) -> None:
    if logbase is not None and not _is_e(logbase):
        raise UnsupportedFeatureError(
            f"random sampling with logbase={logbase!r}",
            "localml's LogUniform and LogNormal use the natural logarithm (Azure's default); "
            "remove logbase or set it to 'e', and give log bounds as natural logs.",
        )


def _checked_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise SpecError(f"sampling_algorithm seed must be a whole number from 0 to 2**32 - 1, got {seed!r}.")
    return int(seed)


def _is_e(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "e":
            return True
        try:
            value = float(text)
        except ValueError:
            return False
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and abs(float(value) - math.e) < 1e-12


def _fail(label: str, problem: str, advice: str) -> SpecError:
    return SpecError(f"search_space parameter '{label}' {problem}. {advice}")


def _number(label: str, kind: str, spec: Mapping, key: str) -> float:
    value = spec[key]
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise _fail(label, f"({kind}) has {key}={value!r}, which is not a finite number", f"Give {key} as a number.")
    return value


def _parse_expression(label: str, spec: Any, sampling: str) -> _Dist | _Choice:
    kind = _expression_kind(label, spec)
    _check_sampling_allows(label, kind, sampling)
    if kind == "choice":
        return _parse_choice(label, spec["values"], sampling)
    if kind == "randint":
        return _parse_randint(label, spec["upper"])
    return _Dist(kind, _distribution_args(label, kind, spec))


def _expression_kind(label: str, spec: Any) -> str:
    """The expression's type, once it is known to have that type's fields, all of them and no others."""
    if not isinstance(spec, Mapping):
        raise _fail(
            label, f"is {spec!r}, not a sweep expression",
            "Give a sweep expression from azure.ai.ml.sweep, e.g. Choice([1, 2]) or Uniform(0.0, 1.0).",
        )
    kind = spec.get("type")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind not in EXPRESSION_FIELDS:
        raise _fail(
            label, f"has unknown expression type {spec.get('type')!r}",
            f"Use one of the azure.ai.ml.sweep expressions: {', '.join(EXPRESSION_FIELDS)}.",
        )
    fields = EXPRESSION_FIELDS[kind]
    missing = [key for key in fields if spec.get(key) is None]
    if missing:
        raise _fail(label, f"({kind}) is missing {', '.join(missing)}", f"Give every field, as {_SDK_NAMES[kind]}.")
    unknown = sorted(set(spec) - set(fields) - {"type"})
    if unknown:
        raise _fail(
            label, f"({kind}) has unexpected field(s) {', '.join(unknown)}", f"{kind} takes {', '.join(fields)}."
        )
    return kind


def _check_sampling_allows(label: str, kind: str, sampling: str) -> None:
    """Azure's rules: grid samples only choices; bayesian only choice, uniform and quniform."""
    if sampling == "grid" and kind != "choice":
        raise _fail(
            label, f"is {kind}, but grid sampling supports only choice (as Azure's grid does)",
            f"Make '{label}' a Choice([...]) of the values to try, or use random, sobol or bayesian sampling.",
        )
    if sampling == "bayesian" and kind not in BAYESIAN_TYPES:
        raise _fail(
            label, f"is {kind}, but bayesian sampling supports only choice, uniform and quniform (Azure's rule)",
            f"Make '{label}' a Choice, Uniform or QUniform, or use random or sobol sampling.",
        )


def _parse_randint(label: str, upper: Any) -> _Dist:
    if not isinstance(upper, numbers.Real) or isinstance(upper, bool) or not float(upper).is_integer() or upper < 1:
        raise _fail(
            label, f"(randint) has upper={upper!r}",
            "Randint(upper) draws integers from [0, upper): give a whole number upper >= 1.",
        )
    return _Dist("randint", {"upper": int(upper)})


def _distribution_args(label: str, kind: str, spec: Mapping) -> dict[str, float]:
    """A continuous distribution's numbers, checked: bounds in order, positive scales, no overflow of exp()."""
    args = {key: _number(label, kind, spec, key) for key in EXPRESSION_FIELDS[kind]}
    if "min_value" in args and not args["min_value"] < args["max_value"]:
        raise _fail(
            label, f"({kind}) has min_value={args['min_value']!r} >= max_value={args['max_value']!r}",
            "Give a min_value below max_value.",
        )
    if "sigma" in args and args["sigma"] <= 0:
        raise _fail(label, f"({kind}) has sigma={args['sigma']!r}", "Give a standard deviation sigma > 0.")
    if "q" in args and args["q"] <= 0:
        raise _fail(label, f"({kind}) has q={args['q']!r}", "Give a quantization step q > 0.")
    if kind in ("loguniform", "qloguniform") and args["max_value"] > _MAX_EXP_ARG:
        raise _fail(
            label, f"({kind}) has max_value={args['max_value']!r}, and exp(max_value) overflows",
            f"{kind} bounds are natural logs of the values (values are exp(uniform(min_value, max_value))): "
            "give e.g. min_value=math.log(1e-4), max_value=math.log(1e-1).",
        )
    if kind in ("lognormal", "qlognormal") and args["mu"] + _NORMAL_REACH * args["sigma"] > _MAX_EXP_ARG:
        raise _fail(
            label, f"({kind}) has mu={args['mu']!r}, sigma={args['sigma']!r}, and exp(normal(mu, sigma)) overflows",
            f"{kind} gives exp(normal(mu, sigma)): give mu and sigma of the value's natural log.",
        )
    return args


def _parse_choice(label: str, values: Any, sampling: str) -> _Choice:
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise _fail(label, f"(choice) has values={values!r}, not a list", "Give Choice a list of values.")
    values = list(values)
    if not values:
        raise _fail(label, "(choice) has no values", "Give Choice at least one value to pick from.")
    options = []
    for index, value in enumerate(values):
        if isinstance(value, Mapping):
            if not value:
                raise _fail(
                    f"{label}[{index}]", "is an empty dict, an empty nested search space",
                    "Give the nested dict at least one parameter, or use a plain value.",
                )
            options.append(_parse_space(value, sampling, prefix=f"{label}[{index}].", nested=True))
        else:
            options.append(copy.deepcopy(value))
    return _Choice(tuple(options))


def _parse_space(space: Mapping, sampling: str, prefix: str = "", nested: bool = False) -> _Space:
    items = []
    produced: dict[str, str] = {}  # trial parameter -> the label of the entry that sets it
    for name, spec in space.items():
        label = f"{prefix}{name}"
        if not isinstance(name, str) or not name:
            raise SpecError(
                f"search_space has the parameter name {label!r}. Name each parameter with a non-empty string."
            )
        if nested and not isinstance(spec, Mapping):
            node: Any = _Const(copy.deepcopy(spec))  # a constant of a nested search space
        else:
            node = _parse_expression(label, spec, sampling)
        for output in _outputs(name, node):
            if output in produced:
                raise SpecError(
                    f"search_space parameters '{produced[output]}' and '{label}' can both set the trial parameter "
                    f"'{output}' (a choice's nested dict merges its keys into the trial's parameters). "
                    "Rename one of them."
                )
            produced[output] = label
        items.append((name, node))
    return _Space(tuple(items))


def _outputs(name: str, node: Any) -> set[str]:
    """The trial parameters an entry can set: a choice of nested dicts sets their keys instead of its own name."""
    if not isinstance(node, _Choice) or not any(isinstance(option, _Space) for option in node.options):
        return {name}
    names: set[str] = set()
    for option in node.options:
        if isinstance(option, _Space):
            for key, child in option.items:
                names |= _outputs(key, child)
        else:
            names.add(name)
    return names


def _quantize(value: float, q: float) -> int | float:
    """``round(value / q) * q``: an int when q is integral (so is the result), else a float on q's decimal grid."""
    steps = round(value / q)
    if float(q).is_integer():
        return steps * int(q)
    return float(Decimal(repr(float(q))) * steps)


def _draw(dist: _Dist, trial: optuna.trial.Trial, key: str) -> int | float:
    kind, args = dist.kind, dist.args
    if kind == "randint":
        return int(trial.suggest_int(key, 0, args["upper"] - 1))
    if "min_value" in args:
        u = float(trial.suggest_float(key, args["min_value"], args["max_value"]))
        value = math.exp(u) if "log" in kind else u
    else:
        p = min(max(float(trial.suggest_float(key, 0.0, 1.0)), _P_CLIP), 1.0 - _P_CLIP)
        x = args["mu"] + args["sigma"] * _STANDARD_NORMAL.inv_cdf(p)  # the standard library's: scipy.stats takes seconds to load
        value = math.exp(x) if "log" in kind else x
    return _quantize(value, args["q"]) if kind.startswith("q") else value


class SearchSpace:
    """A sweep's search space (the SDK's ``search_space`` dict form), validated for one sampling algorithm.

    ``SearchSpace(space, sampling)`` raises ``SpecError`` naming the parameter for an empty or
    non-dict space, an unknown expression type, missing, unexpected or invalid fields (``min_value >= max_value``,
    ``q <= 0``, ``sigma <= 0``, an empty choice, ``upper < 1``), grid sampling over anything but choices,
    bayesian sampling over anything but choice, uniform and quniform, and two entries that could set the same
    trial parameter through nested dicts. An unknown sampling name raises ``UnsupportedFeatureError``.

    Nested parameters are named ``<choice>.<index>.<key>`` in Optuna, so each is a distinct Optuna parameter;
    the configuration :meth:`suggest` returns uses the plain keys. Parameter labels in error messages use
    ``<choice>[<index>].<key>``.
    """

    def __init__(self, space: Mapping[str, Any], sampling: str):
        self.sampling = _sampling_name(sampling) if isinstance(sampling, str) else parse_sampling(sampling)[0]
        if not isinstance(space, Mapping):
            raise SpecError(
                f"The sweep's search_space must be a dict of parameter names to sweep expressions, "
                f"got {type(space).__name__}. Bind each swept input to an azure.ai.ml.sweep expression."
            )
        if not space:
            raise SpecError(
                "The sweep's search_space is empty. Bind at least one input to a sweep expression, "
                "e.g. job(learning_rate=Uniform(0.01, 0.1)).sweep(...)."
            )
        self.space = copy.deepcopy(dict(space))
        self._root = _parse_space(space, self.sampling)
        self._grid_size: int | None = None

    @property
    def names(self) -> list[str]:
        """The top-level parameter names (a choice of nested dicts may replace its name by the dicts' keys)."""
        return [name for name, _ in self._root.items]

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """One configuration, drawn through ``trial.suggest_*`` so that the study's sampler decides it.

        With grid sampling the trial draws a single categorical parameter, ``grid_point``, the index of one
        leaf combination (see :meth:`grid_size`); :func:`make_sampler` gives the ``GridSampler`` over it.
        Otherwise each expression draws its own Optuna parameter as the module docstring describes; a choice
        draws the index of its value (values may be unhashable, e.g. nested dicts).
        """
        if self.sampling == "grid":
            return self._grid_config(int(trial.suggest_categorical(GRID_PARAM, list(range(self.grid_size())))))
        config: dict[str, Any] = {}
        _suggest_space(self._root, trial, "", config)
        return config

    def grid_size(self) -> int:
        """The number of configurations a grid sweep tries: the product of the choices' lengths.

        A choice value that is a nested dict counts as the number of leaf combinations inside it (the product
        of its own choices), so ``Choice([1, {"a": Choice([1, 2]), "b": 3}])`` counts 1 + 2 = 3. Raises
        ``SpecError`` if the space has any expression other than a choice.
        """
        if self._grid_size is None:
            self._grid_size = _space_size(self._root)
        return self._grid_size

    def _grid_config(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.grid_size():
            raise ValueError(f"grid point {index} is outside the grid of {self.grid_size()} configurations")
        config: dict[str, Any] = {}
        _grid_space(self._root, index, config)
        return config

    def __repr__(self) -> str:
        return f"SearchSpace({self.names!r}, sampling={self.sampling!r})"


def _suggest_space(space: _Space, trial: optuna.trial.Trial, prefix: str, config: dict[str, Any]) -> None:
    for name, node in space.items:
        key = f"{prefix}{name}"
        if isinstance(node, _Const):
            config[name] = copy.deepcopy(node.value)
        elif isinstance(node, _Choice):
            index = int(trial.suggest_categorical(key, list(range(len(node.options)))))
            option = node.options[index]
            if isinstance(option, _Space):
                _suggest_space(option, trial, f"{key}.{index}.", config)
            else:
                config[name] = copy.deepcopy(option)
        else:
            config[name] = _draw(node, trial, key)


def _node_size(name: str, node: Any) -> int:
    if isinstance(node, _Const):
        return 1
    if isinstance(node, _Choice):
        return sum(_space_size(option) if isinstance(option, _Space) else 1 for option in node.options)
    raise SpecError(
        f"search_space parameter '{name}' is {node.kind}, and a grid has only choices. "
        f"Make '{name}' a Choice([...]) to grid over it."
    )


def _space_size(space: _Space) -> int:
    return math.prod(_node_size(name, node) for name, node in space.items)


def _grid_space(space: _Space, index: int, config: dict[str, Any]) -> None:
    """Decode a grid index in mixed radix, the last parameter varying fastest (as ``itertools.product``)."""
    digits = []
    for name, node in reversed(space.items):
        index, digit = divmod(index, _node_size(name, node))
        digits.append(digit)
    for (name, node), digit in zip(space.items, reversed(digits)):
        if isinstance(node, _Const):
            config[name] = copy.deepcopy(node.value)
            continue
        for option in node.options:
            size = _space_size(option) if isinstance(option, _Space) else 1
            if digit < size:
                if isinstance(option, _Space):
                    _grid_space(option, digit, config)
                else:
                    config[name] = copy.deepcopy(option)
                break
            digit -= size


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's ``GridSampler`` for ask-and-tell studies: it does not call ``study.stop()`` after the last point.

    ``GridSampler.after_trial`` stops the study once the grid is exhausted, and ``Study.stop`` raises
    ``RuntimeError`` outside ``study.optimize``, so the ``study.tell`` of the last grid point would fail.
    The driver ends a grid sweep itself after ``SearchSpace.grid_size()`` trials (or uses ``is_exhausted``).
    """

    def after_trial(self, study, trial, state, values) -> None:  # noqa: D102
        return None


def make_sampler(
    sampling: str, seed: int | None, space: SearchSpace, *, max_total_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler that runs ``sampling`` over ``space`` (which must be built for the same sampling).

    * ``grid``: :class:`AskTellGridSampler` (a ``GridSampler``) over the grid points
      ``0 .. space.grid_size() - 1`` (see :meth:`SearchSpace.suggest`); each leaf combination once, also when
      trials are asked together, in an order shuffled by ``seed`` (``GridSampler`` uses 0 when there is none,
      so the order is reproducible). Past ``grid_size()`` trials it repeats points: stop there.
    * ``random``: ``RandomSampler(seed)``.
    * ``sobol``: ``QMCSampler(qmc_type="sobol", scramble=True, seed=seed or 0)``: without a seed localml uses
      0, so a sobol sweep is reproducible. Optuna's ``QMCSampler`` draws the very first trial with its
      random sampler (same seed) and takes the space from it; parameters of nested dicts that the first
      trial did not draw are then sampled at random.
    * ``bayesian``: :class:`~amlkit.sweep.bayesian.GaussianProcessSampler` ``(seed=seed or 0, n_startup_trials=...)``,
      a Gaussian process with Expected Improvement like Azure's bayesian sampling (Optuna's TPE barely beats
      random sampling at sweep budgets, and its ``GPSampler`` needs torch): 5 random start-up trials, or a
      quarter of ``max_total_trials`` when that is smaller (at least 1), so that it starts exploiting early.
    """
    name = _sampling_name(sampling)
    if name != space.sampling:
        raise SpecError(
            f"make_sampler({name!r}) needs a SearchSpace built for {name!r} sampling, "
            f"got one built for {space.sampling!r}."
        )
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise SpecError(f"The sampling seed must be a whole number from 0 to 2**32 - 1, got {seed!r}.")
    if name == "grid":
        return AskTellGridSampler({GRID_PARAM: list(range(space.grid_size()))}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "sobol":
        with warnings.catch_warnings():  # QMCSampler is marked experimental; we chose it deliberately
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=DEFAULT_SEED if seed is None else seed,
                warn_independent_sampling=False,
            )
    startup = MAX_BAYESIAN_STARTUP_TRIALS
    if max_total_trials is not None:
        startup = max(1, min(MAX_BAYESIAN_STARTUP_TRIALS, int(max_total_trials) // 4))
    from amlkit.sweep.bayesian import (
        GaussianProcessSampler,  # scikit-learn: loaded for bayesian sweeps only
    )

    return GaussianProcessSampler(seed=DEFAULT_SEED if seed is None else seed, n_startup_trials=startup)


def parameter_names(space: dict) -> set[str]:
    """Every hyperparameter a search space can set; a choice among dicts contributes the dicts' keys."""
    names = set()
    for name, expression in space.items():
        nested = [v for v in (expression.get("values") or []) if isinstance(v, dict)] if isinstance(expression, dict) else []
        if nested:
            for value in nested:
                names |= parameter_names({k: v if isinstance(v, dict) else {"type": "literal"} for k, v in value.items()})
        else:
            names.add(name)
    return names


_TRIAL_PLACEHOLDER = re.compile(r"\$\{\{\s*(?:inputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")


def referenced_parameters(command: str | None) -> set[str]:
    """The names a trial command reads as ``${{inputs.<name>}}`` or ``${{search_space.<name>}}``."""
    return set(_TRIAL_PLACEHOLDER.findall(command or ""))
