"""Explanations of an AutoML model over its raw input columns (featurization included).

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
    import shap

    folder.mkdir(parents=True, exist_ok=True)
    columns = list(features.columns)
    background = features.sample(min(BACKGROUND_ROWS, len(features)), random_state=1)
    rows = features.sample(min(EXPLAINED_ROWS, len(features)), random_state=0)

    # SHAP's masker works on numbers: categories travel as their position in a per-column index
    categories = {
        c: pd.Index(pd.concat([background[c], rows[c]]).astype(object).unique())
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
    values = np.asarray(explainer(as_numbers(rows), max_evals=2 * len(columns) + 1).values, dtype=float)
    if values.ndim == 3:  # classification: rows x features x classes
        predicted = model.predict_proba(rows).argmax(axis=1)
        global_values = np.abs(values).mean(axis=(0, 2))
        values = values[np.arange(len(rows)), :, predicted]
    else:
        global_values = np.abs(values).mean(axis=0)
    importance = dict(sorted(zip(columns, map(float, global_values)), key=lambda item: -item[1]))
    (folder / "global_importance.json").write_text(json.dumps(importance, indent=2))
    local = pd.DataFrame(values, columns=columns, index=rows.index)
    local.index.name = "row"
    local.to_csv(folder / "local_importance.csv")
    _plot(importance, folder / "feature_importance.png")
    return importance


def _plot(importance: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importance)[::-1]
    figure, axis = plt.subplots(figsize=(6, 0.35 * len(names) + 1))
    axis.barh(names, [importance[n] for n in names], color="#2f6db5")
    axis.set_xlabel("mean |SHAP value| (effect on the prediction)")
    axis.set_title("Feature importance of the best model")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
