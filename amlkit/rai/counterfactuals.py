"""Counterfactuals (dice-ml): for sampled test rows, the smallest feature changes that flip the prediction.

This is the slow part of a review, so it is bounded twice: in rows and in seconds (checked between rows).
Rows left when the time is up are reported as not explained, never silently dropped.
"""

from __future__ import annotations

import time

import pandas as pd

from amlkit.rai.review import Review


def counterfactuals(
    review: Review,
    total_cfs: int = 3,
    rows: int = 5,
    time_budget_seconds: float = 60.0,
    method: str = "random",
    desired_class: str | int = "opposite",
    desired_range: list[float] | None = None,
    features_to_vary: list[str] | str = "all",
) -> dict:
    """Up to ``total_cfs`` counterfactuals for each of ``rows`` sampled test rows, each listing only what changed."""
    import dice_ml

    if features_to_vary != "all":
        review.check_features(list(features_to_vary), "Feature to vary")
    if review.task == "regression" and desired_range is None:
        raise ValueError("Counterfactuals of a regression model need desired_range, the [low, high] to reach.")
    continuous = [f for f in review.features if f not in review.categorical and pd.api.types.is_numeric_dtype(review.test[f])]
    data = dice_ml.Data(dataframe=review.train, continuous_features=continuous, outcome_name=review.target)
    model_type = "classifier" if review.task == "classification" else "regressor"
    explainer = dice_ml.Dice(data, dice_ml.Model(model=review.model, backend="sklearn", model_type=model_type), method=method)
    goal = {"desired_class": desired_class} if review.task == "classification" else {"desired_range": desired_range}
    sample = review.X_test.sample(min(rows, len(review.test)), random_state=0)
    started, results, skipped = time.monotonic(), [], []
    for index, row in sample.iterrows():
        if time.monotonic() - started > time_budget_seconds:
            skipped.append(str(index))
            continue
        # dice's default linear sparsity search predicts up to 10,000 times per feature and counterfactual:
        # minutes per row for a model whose predict costs milliseconds (an AutoML pipeline); binary search
        # reaches the same kind of sparse change in a few dozen predictions
        found = explainer.generate_counterfactuals(
            row.to_frame().T, total_CFs=total_cfs, features_to_vary=features_to_vary, verbose=False,
            posthoc_sparsity_algorithm="binary", **goal
        )
        results.append(_changes(index, row, found.cf_examples_list[0].final_cfs_df, review))
    return {
        "method": method,
        "rows": results,
        "rows_not_explained_in_time": skipped,
        "seconds": round(time.monotonic() - started, 2),
    }


def _changes(index, row: pd.Series, found: pd.DataFrame | None, review: Review) -> dict:
    original = review.model.predict(row.to_frame().T)[0]
    alternatives = []
    for _, alternative in (found if found is not None else pd.DataFrame()).iterrows():
        changed = {f: {"from": _plain(row[f]), "to": _plain(alternative[f])} for f in review.features if alternative[f] != row[f]}
        alternatives.append({"changes": changed, "prediction": _plain(alternative[review.target])})
    return {"row": str(index), "prediction": _plain(original), "counterfactuals": alternatives}


def _plain(value):
    return value.item() if hasattr(value, "item") else value
