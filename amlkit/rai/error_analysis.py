"""Error analysis: a surrogate tree finds the cohorts where the model errs most; a heat map shows the
error rate over one or two features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from amlkit.rai.review import Review

HEATMAP_BINS = 4


def wrong(review: Review) -> np.ndarray:
    """Which test rows the model gets wrong: a misclassification, or an error above the median (regression)."""
    predicted = np.asarray(review.model.predict(review.X_test))
    if review.task == "classification":
        return predicted != review.y_test.to_numpy()
    error = np.abs(predicted - review.y_test.to_numpy(dtype=float))
    return error > np.median(error)


def analyze_errors(review: Review, max_depth: int = 3, min_child_samples: int = 20, heatmap_features: list[str] | None = None) -> dict:
    """The surrogate tree's nodes (rows, error rate, share of all errors), the worst cohort, and a heat map."""
    from sklearn.tree import DecisionTreeClassifier

    errors = wrong(review)
    X = _numeric(review.X_test)
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_child_samples, random_state=0).fit(X, errors)
    nodes = _nodes(tree, X, errors)
    leaves = [n for n in nodes if n["leaf"]]
    worst = max(leaves, key=lambda n: (n["error_rate"], n["rows"]))
    features = heatmap_features or _most_used(tree, list(X.columns))
    review.check_features(features, "Heat map feature")
    return {
        "error_rate": float(errors.mean()),
        "errors": int(errors.sum()),
        "rows": int(len(errors)),
        "tree": nodes,
        "worst_cohort": worst,
        "heatmap": _heatmap(review.X_test, errors, features[:2]),
    }


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as codes, so the tree can split on them."""
    return frame.apply(lambda c: c if pd.api.types.is_numeric_dtype(c) else c.astype("category").cat.codes)


def _nodes(tree, X: pd.DataFrame, errors: np.ndarray) -> list[dict]:
    """Every node of the tree as a cohort: its conditions, rows, errors, error rate and share of all errors."""
    structure, columns = tree.tree_, list(X.columns)
    membership = tree.decision_path(X)  # rows x nodes
    rows_in = np.asarray(membership.sum(axis=0)).ravel()
    errors_in = np.asarray(membership.T @ errors.astype(int)).ravel()
    total_errors = max(int(errors.sum()), 1)
    conditions: dict[int, list[str]] = {0: []}
    nodes = []
    for node in range(structure.node_count):
        left, right = structure.children_left[node], structure.children_right[node]
        if left != -1:
            feature, threshold = columns[structure.feature[node]], float(structure.threshold[node])
            conditions[left] = conditions[node] + [f"{feature} <= {threshold:.4g}"]
            conditions[right] = conditions[node] + [f"{feature} > {threshold:.4g}"]
        rows, node_errors = int(rows_in[node]), int(errors_in[node])
        nodes.append({
            "id": node,
            "cohort": " and ".join(conditions[node]) or "all rows",
            "rows": rows,
            "errors": node_errors,
            "error_rate": node_errors / rows if rows else 0.0,
            "error_coverage": node_errors / total_errors,
            "leaf": bool(left == -1),
        })
    return nodes


def _most_used(tree, columns: list[str]) -> list[str]:
    order = np.argsort(tree.feature_importances_)[::-1]
    return [columns[i] for i in order[:2] if tree.feature_importances_[i] > 0] or columns[:1]


def _heatmap(features: pd.DataFrame, errors: np.ndarray, names: list[str]) -> dict:
    """Error rate in each cell of one or two features, numbers cut into quantile bins."""
    bands = [_bands(features[name]) for name in names]
    frame = pd.DataFrame({f"f{i}": band for i, band in enumerate(bands)}).assign(error=errors.astype(float))
    if len(names) == 1:
        grouped = frame.groupby("f0", observed=True)["error"]
        return {"features": names, "rows": [str(k) for k in grouped.mean().index], "columns": ["error rate"],
                "error_rate": [[float(v)] for v in grouped.mean()], "counts": [[int(v)] for v in grouped.size()]}
    table = frame.pivot_table(index="f0", columns="f1", values="error", aggfunc=["mean", "size"], observed=False)
    return {
        "features": names,
        "rows": [str(k) for k in table["mean"].index],
        "columns": [str(k) for k in table["mean"].columns],
        "error_rate": [[None if pd.isna(v) else float(v) for v in row] for row in table["mean"].to_numpy()],
        "counts": [[0 if pd.isna(v) else int(v) for v in row] for row in table["size"].to_numpy()],
    }


def _bands(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > HEATMAP_BINS:
        return pd.qcut(values, HEATMAP_BINS, duplicates="drop")
    return values.astype(str)
