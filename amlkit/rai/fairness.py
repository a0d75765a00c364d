"""Fairness (fairlearn): the model's metrics in each cohort of a sensitive or cohort feature, and the
largest gap between cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amlkit.rai.review import Review


def cohorts(values: pd.Series, bins: list[float] | None = None) -> pd.Series:
    """Cohort labels: bands of a numeric feature (the given edges, or quartiles), or the values themselves."""
    if pd.api.types.is_numeric_dtype(values) and (bins or values.nunique() > 10):
        banded = pd.cut(values, bins) if bins else pd.qcut(values, 4, duplicates="drop")
        return banded.astype(str)
    return values.astype(str)


def fairness(review: Review, cohort_feature: str, bins: list[float] | None = None) -> dict:
    """Metrics by cohort (classification: accuracy, selection rate, recall; regression: MAE, R2) and each
    metric's largest difference between cohorts."""
    from fairlearn.metrics import MetricFrame, selection_rate
    from sklearn import metrics

    review.check_features([cohort_feature], "Cohort feature")
    predicted = np.asarray(review.model.predict(review.X_test))
    truth = review.y_test.to_numpy()
    if review.task == "classification":
        positive = review.classes[-1]
        measures = {
            "accuracy": metrics.accuracy_score,
            "selection_rate": lambda y, p: selection_rate(y, p, pos_label=positive),
            "recall": lambda y, p: metrics.recall_score(y, p, pos_label=positive, average="binary" if len(review.classes) == 2 else "macro", zero_division=0),
        }
    else:
        measures = {"mean_absolute_error": metrics.mean_absolute_error, "r2_score": metrics.r2_score}
    groups = cohorts(review.test[cohort_feature], bins)
    frame = MetricFrame(metrics=measures, y_true=truth, y_pred=predicted, sensitive_features=groups.rename(cohort_feature))
    by_group = frame.by_group
    return {
        "feature": cohort_feature,
        "cohorts": {str(k): {m: float(v) for m, v in row.items()} for k, row in by_group.iterrows()},
        "rows": {str(k): int(v) for k, v in groups.value_counts().items()},
        "largest_gap": {m: float(v) for m, v in frame.difference().items()},
    }


def fairness_by_first_cohort_feature(review: Review, cohort_features: dict[str, list[float] | None]) -> dict:
    """The fairness analysis of the first of ``{feature: band edges or None}`` (the one the scorecard judges)."""
    feature, bins = next(iter(cohort_features.items()))
    return fairness(review, feature, bins or None)
