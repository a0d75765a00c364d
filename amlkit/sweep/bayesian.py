"""A small Gaussian-process Bayesian-optimization sampler for Optuna, for Azure ML's ``bayesian`` sweeps.

Why this exists:

* Azure ML's ``bayesian`` sampling is Gaussian-process based, so localml models the results with a GP too.
* Optuna's ``TPESampler`` is weak at the budgets sweeps use (10-15 trials): on a smooth 2-D objective it beats
  random sampling in barely more than half of the seeds at 15 trials.
* Optuna's own ``GPSampler`` needs torch, which localml does not depend on; this one uses scikit-learn.

How it samples: the first ``n_startup_trials`` trials, and every parameter outside the search space shared by
all completed trials (e.g. a nested choice's parameters), come from ``RandomSampler(seed)``. After that it fits
a ``GaussianProcessRegressor`` (constant x Matern 5/2 with one length scale per column, plus white noise) to
the completed trials in Optuna's ``[0, 1]`` encoding of the space (categoricals one-hot), and picks the
candidate with the highest Expected Improvement among uniform random points and Gaussian perturbations of the
best observed points; candidates are snapped to configurations the space can take before they are scored.
Choices measured to help at sweep budgets: the GP's prior mean is the worst result so far (not the mean),
which keeps it from spending trials on the corners of the box; EI uses the noise-free posterior and, as the
incumbent, the best posterior mean at a tried point (not a possibly lucky observed value); points already
tried are left out. Running trials count as observed at the GP's predicted mean ("kriging believer") and
candidates next to them are left out, so trials asked together do not pick the same point. Given the seed and
the sequence of asks and tells, the configurations are reproducible.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna._transform import _SearchSpaceTransform
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
)
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from threadpoolctl import threadpool_limits

#: How close (in the ``[0, 1]`` encoding) a new point may come to a running trial's while there are others.
PENDING_RADIUS = 0.05


class GaussianProcessSampler(optuna.samplers.BaseSampler):
    """GP + Expected Improvement over the study's intersection search space (single objective).

    ``seed`` makes the sampling reproducible; ``n_startup_trials`` completed trials are drawn at random before
    the GP takes over; ``n_candidates`` uniform random candidates and ``n_local_candidates`` perturbations of
    the ``n_best`` best observed points are scored by Expected Improvement for each trial.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 5,
        n_candidates: int = 1024,
        n_local_candidates: int = 512,
        n_best: int = 3,
    ) -> None:
        if n_startup_trials < 1:
            raise ValueError(f"n_startup_trials must be at least 1, got {n_startup_trials}.")
        self._seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
        self._n_startup_trials = n_startup_trials
        self._n_candidates = n_candidates
        self._n_local_candidates = n_local_candidates
        self._n_best = n_best
        self._random_sampler = optuna.samplers.RandomSampler(seed=seed)
        self._search_space = optuna.search_space.IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**32)
        self._random_sampler.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {
            name: dist for name, dist in self._search_space.calculate(study).items() if not dist.single()
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        complete = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value) and all(name in t.params for name in search_space)
        ]
        if len(complete) < self._n_startup_trials:
            return {}
        running = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != trial.number and all(name in t.params for name in search_space)
        ]
        transform = _SearchSpaceTransform(search_space, transform_0_1=True)
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0  # the GP always minimizes
        x = np.array([transform.transform(_params(t, search_space)) for t in complete])
        y = np.array([sign * t.value for t in complete])
        pending = np.array([transform.transform(_params(t, search_space)) for t in running])
        pending = pending.reshape(-1, x.shape[1])  # (0, columns) when no trial is running
        # One generator per trial number: the same tells give the same point however often we are called.
        rng = np.random.default_rng([self._seed, trial.number])
        # The matrices are tiny: BLAS threads only add overhead (many times the work on a busy machine).
        with threadpool_limits(limits=1):
            best = self._next_point(x, y, pending, search_space, transform, rng)
        return transform.untransform(best)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random_sampler.sample_independent(study, trial, param_name, param_distribution)

    def _next_point(
        self, x: np.ndarray, y: np.ndarray, pending: np.ndarray, search_space: dict[str, BaseDistribution],
        transform: _SearchSpaceTransform, rng: np.random.Generator,
    ) -> np.ndarray:
        # Standardize with the worst value as the prior mean: unexplored regions are expected to be no better
        # than the worst result so far, which keeps a small budget from being spent on the box's corners.
        y = (y - y.max()) / (y.std() or 1.0)
        kernel, noise = _fit_hyperparameters(x, y, rng)
        # Kriging believer: running trials count as observed at the GP's predicted mean, so that trials asked
        # together do not pick the same point (its expected improvement is then about 0).
        believed = _posterior(x, y, kernel, noise).predict(pending) if len(pending) else np.zeros(0)
        tried = np.vstack([x, pending])
        model = _posterior(tried, np.concatenate([y, believed]), kernel, noise)
        candidates = self._candidates(x, y, search_space, transform, rng)
        # Leave out points already tried (clipping and one-hot snapping can repeat one) and, as the believed
        # values alone would let trials asked together crowd one spot, points next to a running trial.
        fresh = (_distances(candidates, x) > 1e-6).all(axis=1)
        fresh &= (_distances(candidates, pending) > PENDING_RADIUS).all(axis=1)
        if fresh.any():
            candidates = candidates[fresh]
        mean, std = model.predict(candidates, return_std=True)
        # The incumbent is the best posterior mean at a tried point rather than the best observed value, which
        # with noisy results may be a lucky draw that makes every improvement look hopeless.
        incumbent = model.predict(tried).min()
        return candidates[int(np.argmax(_expected_improvement(mean, std, incumbent)))]

    def _candidates(
        self, x: np.ndarray, y: np.ndarray, search_space: dict[str, BaseDistribution],
        transform: _SearchSpaceTransform, rng: np.random.Generator,
    ) -> np.ndarray:
        low, high = transform.bounds[:, 0], transform.bounds[:, 1]
        uniform = rng.uniform(low, high, size=(self._n_candidates, len(low)))
        centers = x[np.argsort(y, kind="stable")[: self._n_best]]
        scales = (high - low) * rng.choice([0.02, 0.05, 0.15], size=(self._n_local_candidates, 1))
        local = centers[rng.integers(len(centers), size=self._n_local_candidates)]
        local = local + rng.normal(size=local.shape) * scales
        return _snap(np.vstack([uniform, np.clip(local, low, high)]), search_space, transform)


def _snap(
    candidates: np.ndarray, search_space: dict[str, BaseDistribution], transform: _SearchSpaceTransform
) -> np.ndarray:
    """Candidates moved to configurations the space can take, so that EI scores real configurations."""
    if any(isinstance(d, IntDistribution) or getattr(d, "step", None) is not None for d in search_space.values()):
        # Integers and steps (not produced by localml's bayesian spaces): the general, slower way.
        return np.array([transform.transform(transform.untransform(row)) for row in candidates])
    snapped = candidates.copy()
    for dist, columns in zip(search_space.values(), transform.column_to_encoded_columns):
        if isinstance(dist, CategoricalDistribution):  # one-hot: the highest column wins, as in untransform
            snapped[:, columns] = np.eye(len(columns))[candidates[:, columns].argmax(axis=1)]
    return snapped


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and the rows of ``b``."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def _params(trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
    return {name: trial.params[name] for name in search_space}


def _fit_hyperparameters(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[Any, float]:
    """The fitted signal kernel (constant x Matern 5/2, one length scale per column) and noise variance."""
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
        length_scale=np.full(x.shape[1], 0.5), length_scale_bounds=(0.05, 10.0), nu=2.5
    ) + WhiteKernel(1e-3, (1e-6, 1e-1))
    gp = GaussianProcessRegressor(kernel=kernel, random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    return gp.kernel_.k1, float(gp.kernel_.k2.noise_level)


def _posterior(x: np.ndarray, y: np.ndarray, kernel: Any, noise: float) -> GaussianProcessRegressor:
    """The GP with fixed hyperparameters, the noise as ``alpha``: it predicts the noise-free objective."""
    return GaussianProcessRegressor(kernel=kernel, alpha=noise, optimizer=None).fit(x, y)


def _expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI below ``best`` for a minimization."""
    std = np.maximum(std, 1e-12)
    z = (best - mean) / std
    return (best - mean) * norm.cdf(z) + std * norm.pdf(z)
