"""Where each algorithm's search begins: a strong configuration, as Azure's first trials are.

FLAML's own first trial of a tree ensemble is its cheapest model (4 trees of 4 leaves), so a few
trials stay far below what Azure reaches with the same ``max_trials``. localml starts each algorithm
from FLAML's data-dependent defaults (its zero-shot portfolio, ``flaml.default``) where FLAML has
them, and from the library's own defaults otherwise; the other algorithms' FLAML starting values
already are their library's defaults. The strongest algorithms are tried first.
"""

from __future__ import annotations

import numpy as np

#: FLAML estimators in the order a search first tries them: the usual winners on tabular data first.
SEARCH_ORDER = ("lgbm", "xgboost", "histgb", "extra_tree", "rf", "lrl2", "enet", "lassolars", "kneighbor", "sgd")
#: scikit-learn's own HistGradientBoosting defaults, in FLAML's names (FLAML has no portfolio for it):
#: 100 iterations, 31 leaves, 255 bins; l2_regularization 0 is below FLAML's range, so its floor.
LIBRARY_DEFAULTS = {
    "histgb": {"n_estimators": 100, "max_leaves": 31, "min_samples_leaf": 20, "learning_rate": 0.1,
               "log_max_bin": 8, "l2_regularization": 1 / 1024},
}


def search_order(estimators: list[str]) -> list[str]:
    """``estimators`` in the order the search should first try them (unknown names last, as given)."""
    rank = {name: i for i, name in enumerate(SEARCH_ORDER)}
    return sorted(estimators, key=lambda name: rank.get(name, len(SEARCH_ORDER)))


def starting_points(flaml_task: str, X: np.ndarray, y: np.ndarray, estimators: list[str], training_rows: int) -> dict[str, dict]:
    """The first configuration of each estimator that has a better one than FLAML's cheapest, kept inside
    FLAML's search space for ``training_rows`` rows (FLAML silently drops a start outside it)."""
    from flaml.automl.task.factory import task_factory

    task = task_factory(flaml_task)
    points = {}
    for name in estimators:
        point = LIBRARY_DEFAULTS.get(name) or _data_dependent(flaml_task, X, y, name)
        if point:
            space = task.estimator_class_from_str(name).search_space(data_size=(training_rows, X.shape[1]), task=task)
            points[name] = {key: _inside(value, space[key]["domain"]) for key, value in point.items() if key in space}
    return points


def _data_dependent(flaml_task: str, X: np.ndarray, y: np.ndarray, name: str) -> dict | None:
    """FLAML's zero-shot configuration for ``name`` on data like this, or None where FLAML has no portfolio."""
    from flaml.default import suggest_config

    try:
        return suggest_config(flaml_task, X, y, name, k=1)[0]["hyperparameters"]
    except FileNotFoundError:
        return None


def _inside(value, domain):
    """``value`` moved to the nearest bound of a numeric ``domain`` it lies outside (kept as is otherwise)."""
    from flaml.tune.sample import Float, Integer

    if not isinstance(domain, (Float, Integer)) or not isinstance(value, (int, float)):
        return value
    bounded = min(max(value, domain.lower), domain.upper)
    return int(bounded) if isinstance(domain, Integer) else bounded
