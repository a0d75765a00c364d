"""Explanations: which features move the model's predictions, overall and for single rows."""

from __future__ import annotations

import logging

from amlkit.explain import shap_importance
from amlkit.rai.review import Review

EXPLAINED_ROWS = 50


def explain(review: Review, rows: int = EXPLAINED_ROWS) -> dict:
    """Global importance (mean |SHAP value|) and per-row SHAP values of sampled test rows.

    When SHAP cannot explain the model, scikit-learn's permutation importance gives the global
    importance (the drop of the model's score when a feature is shuffled), without per-row values.
    """
    try:
        importance, local = shap_importance(review.model, review.X_test, review.task, rows=rows)
        method = "SHAP (permutation explainer over the raw columns)"
        per_row = {str(index): row for index, row in local.round(6).to_dict(orient="index").items()}
    except Exception as error:  # SHAP fails on some models; permutation importance needs only predict
        logging.getLogger(__name__).warning("SHAP could not explain the model (%s); using permutation importance", error)
        importance, method, per_row = _permutation_importance(review), "permutation importance", {}
    return {"method": method, "global_importance": importance, "local_importance": per_row}


def _permutation_importance(review: Review) -> dict[str, float]:
    from sklearn.inspection import permutation_importance

    scoring = "roc_auc_ovr_weighted" if review.task == "classification" else "r2"
    result = permutation_importance(review.model, review.X_test, review.y_test, scoring=scoring, n_repeats=5, random_state=0)
    importance = dict(zip(review.features, map(float, result.importances_mean)))
    return dict(sorted(importance.items(), key=lambda item: -item[1]))
