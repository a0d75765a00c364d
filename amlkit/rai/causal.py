"""Causal analysis (econml): the average effect of a treatment feature on the outcome, with a confidence
interval, the other features held as controls (double machine learning)."""

from __future__ import annotations

import numpy as np

from amlkit.rai.review import Review

MAX_ROWS = 2000


def causal_effects(review: Review, treatment_features: list[str], alpha: float = 0.05, max_rows: int = MAX_ROWS) -> dict:
    """For each treatment: its average treatment effect on the outcome and the (1 - alpha) interval.

    A treatment with two values is binary (the effect of having the higher one); otherwise the effect is
    per unit of the feature. The outcome is the true label (the class index for classification).
    """
    review.check_features(treatment_features, "Treatment feature")
    rows = review.train.sample(min(max_rows, len(review.train)), random_state=0)
    outcome = rows[review.target]
    if review.task == "classification":
        outcome = np.searchsorted(np.asarray(review.classes), outcome.to_numpy())
    effects = {}
    for treatment in treatment_features:
        effects[treatment] = _effect(rows, np.asarray(outcome, dtype=float), treatment, [f for f in review.features if f != treatment], alpha)
    return {"alpha": alpha, "rows": len(rows), "effects": effects}


def _effect(rows, outcome: np.ndarray, treatment: str, controls: list[str], alpha: float) -> dict:
    from econml.dml import LinearDML
    from lightgbm import LGBMClassifier, LGBMRegressor

    values = rows[treatment]
    binary = values.nunique() == 2
    treated = (values == values.max()).astype(int).to_numpy() if binary else values.to_numpy(dtype=float)
    controls_frame = rows[controls].apply(lambda c: c if c.dtype.kind in "biuf" else c.astype("category").cat.codes)
    estimator = LinearDML(
        model_y=LGBMRegressor(n_estimators=50, verbose=-1),
        model_t=LGBMClassifier(n_estimators=50, verbose=-1) if binary else LGBMRegressor(n_estimators=50, verbose=-1),
        discrete_treatment=binary,
        cv=3,
        random_state=0,
    )
    estimator.fit(outcome, treated, X=None, W=controls_frame.to_numpy(dtype=float))
    low, high = estimator.ate_interval(alpha=alpha)
    return {
        "kind": f"binary ({treatment} = {values.max()} against {values.min()})" if binary else f"per unit of {treatment}",
        "average_effect": float(estimator.ate()),
        "interval": [float(np.ravel(low)[0]), float(np.ravel(high)[0])],
    }
