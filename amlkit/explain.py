"""Explanations of a model over its raw input columns (featurization included): AutoML's best
model, and the Responsible AI review's explanation step.

SHAP's permutation explainer treats the whole model as a black box, so the importances
are for the columns a user knows, not for one-hot encoded internals. Bounded in rows and
evaluations: explaining is meant to take seconds, not minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

EXPLAINED_ROWS = 20
BACKGROUND_ROWS = 50


def explain_model(model, features: pd.DataFrame, task: str, folder: Path) -> dict:
    """Write global and per-row importances (JSON, CSV) and a bar chart; return the global importances."""
    folder.mkdir(parents=True, exist_ok=True)
    importance, local = shap_importance(model, features, task)
    (folder / "global_importance.json").write_text(json.dumps(importance, indent=2))
    local.to_csv(folder / "local_importance.csv")
    plot_importance(importance, folder / "feature_importance.png", "Feature importance of the best model")
    return importance


def shap_importance(
    model, features: pd.DataFrame, task: str, rows: int = EXPLAINED_ROWS, background_rows: int = BACKGROUND_ROWS
) -> tuple[dict[str, float], pd.DataFrame]:
    """Global importance (mean |SHAP value| per column, largest first) and the per-row SHAP values of up to
    ``rows`` sampled rows (for classification, towards each row's predicted class)."""
    import shap

    columns = list(features.columns)
    background = features.sample(min(background_rows, len(features)), random_state=1)
    explained = features.sample(min(rows, len(features)), random_state=0)

    # SHAP's masker works on numbers: categories travel as their position in a per-column index
    categories = {
        c: pd.Index(pd.concat([background[c], explained[c]]).astype(object).unique())
        for c in columns if not pd.api.types.is_numeric_dtype(features[c])
    }

    def as_numbers(frame: pd.DataFrame) -> np.ndarray:
        coded = frame.copy()
        for column, index in categories.items():
            coded[column] = index.get_indexer(frame[column].astype(object))
        return coded.to_numpy(dtype=float)

    def predict(values: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(values, columns=columns)
        for column in columns:
            if column in categories:
                frame[column] = categories[column][np.rint(frame[column]).astype(int)]
            else:
                frame[column] = frame[column].astype(features[column].dtype)
        return model.predict_proba(frame) if task == "classification" else model.predict(frame)

    explainer = shap.explainers.Permutation(predict, shap.maskers.Independent(as_numbers(background)))
    values = np.asarray(explainer(as_numbers(explained), max_evals=2 * len(columns) + 1).values, dtype=float)
    if values.ndim == 3:  # classification: rows x features x classes
        predicted = model.predict_proba(explained).argmax(axis=1)
        global_values = np.abs(values).mean(axis=(0, 2))
        values = values[np.arange(len(explained)), :, predicted]
    else:
        global_values = np.abs(values).mean(axis=0)
    importance = dict(sorted(zip(columns, map(float, global_values)), key=lambda item: -item[1]))
    local = pd.DataFrame(values, columns=columns, index=explained.index)
    local.index.name = "row"
    return importance, local


def plot_importance(importance: dict[str, float], path: Path, title: str) -> None:
    from amlkit.plots import new_figure, png

    names = list(importance)[::-1]
    figure, axis = new_figure((6, 0.35 * len(names) + 1))
    axis.barh(names, [importance[n] for n in names], color="#2f6db5")
    axis.set_xlabel("mean |SHAP value| (effect on the prediction)")
    axis.set_title(title)
    path.write_bytes(png(figure, dpi=100))
