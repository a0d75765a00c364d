"""The model an AutoML job produces: featurization and the best estimator in one scikit-learn object.

This module is pickled *by value* into the saved model (see ``driver.save_model``), so a
registered model loads wherever scikit-learn and the estimator's library are installed,
without localml. Keep it self-contained: no imports from localml.

A served model predicts one row at a time, where scikit-learn's and LightGBM's per-call input checks cost far
more than the arithmetic (3.5 ms a row against 0.05 ms; see ``benchmarks/RESULTS.md``). So the fitted parts
that allow it predict through a plain path of the same float64 operations on their fitted statistics:
``NumericPart`` for an imputer-and-scaler pipeline, ``lightgbm_booster`` for LightGBM's own estimators. Every
other part, and any input the plain path does not take, goes through scikit-learn as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator


class AutoMLModel(BaseEstimator):
    """Raw rows in, predictions out: ``featurizer`` turns a DataFrame into numbers, ``estimator`` predicts.

    For classification ``classes`` maps the estimator's class indices back to the original labels.
    """

    def __init__(self, featurizer, estimator, feature_columns, classes=None):
        self.featurizer = featurizer
        self.estimator = estimator
        self.feature_columns = feature_columns
        self.classes = classes

    @property
    def classes_(self):
        return None if self.classes is None else np.asarray(self.classes)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_parts", None)  # derived from the featurizer: rebuilt after loading, never saved
        return state

    def _features(self, X) -> np.ndarray:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.feature_columns)
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"Input is missing the model's columns {missing}; it expects {list(self.feature_columns)}.")
        parts = self._featurizer_parts()
        if parts is None:
            return self.featurizer.transform(frame[list(self.feature_columns)])
        blocks = [part.transform(frame) for part in parts]
        return blocks[0] if len(blocks) == 1 else np.hstack(blocks)

    def _featurizer_parts(self) -> list | None:
        """The featurizer's parts, each transforming its own columns; None to use the featurizer whole."""
        featurizer, parts = getattr(self, "_parts", (None, None))
        if featurizer is not self.featurizer:
            parts = featurizer_parts(self.featurizer)
            self._parts = (self.featurizer, parts)
        return parts

    def _estimates(self, features: np.ndarray, probabilities: bool) -> np.ndarray:
        booster = lightgbm_booster(self.estimator)
        if booster is None:
            return self.estimator.predict_proba(features) if probabilities else self.estimator.predict(features)
        # LightGBM's scikit-learn predict is this call plus checks; n_jobs below 1 means its default threads
        n_jobs = self.estimator.n_jobs
        scores = booster.predict(features, num_threads=n_jobs if n_jobs and n_jobs > 0 else 0)
        if self.classes is None:
            return scores
        proba = scores if scores.ndim == 2 else np.vstack((1.0 - scores, scores)).transpose()
        return proba if probabilities else self.estimator.classes_[np.argmax(proba, axis=1)]

    def predict(self, X):
        predicted = self._estimates(self._features(X), probabilities=False)
        if self.classes is None:
            return np.asarray(predicted)
        return np.asarray(self.classes)[np.asarray(predicted).astype(int)]

    def predict_proba(self, X):
        return self._estimates(self._features(X), probabilities=True)


class NumericPart:
    """A fitted pipeline of imputer and scaler over numeric columns, as numpy operations on its statistics.

    The same float64 arithmetic scikit-learn does (impute NaN with the fitted value, subtract the mean, divide by
    the scale), without its per-call input validation. Input it does not take (columns that are not plain numpy
    numbers, infinite values) goes through the pipeline itself, which converts it or raises its own error.
    """

    def __init__(self, pipeline, columns: list[str], fill: np.ndarray | None, mean: np.ndarray | None,
                 scale: np.ndarray | None):
        self.pipeline, self.columns, self.fill, self.mean, self.scale = pipeline, columns, fill, mean, scale

    @classmethod
    def of(cls, pipeline, columns: list[str]) -> NumericPart | None:
        """The part for ``pipeline`` (imputer, scaler, both or neither), or None when it holds anything else."""
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import StandardScaler

        fill = mean = scale = None
        steps = [step for _, step in getattr(pipeline, "steps", [])]
        if not steps or len(steps) != len(getattr(pipeline, "steps", [])):
            return None
        for step in steps:
            if type(step) is SimpleImputer and fill is None and mean is None and scale is None:
                fill = _imputed_values(step)
                if fill is None:
                    return None
            elif type(step) is StandardScaler and mean is None and scale is None:
                mean = step.mean_ if step.with_mean else None
                scale = step.scale_ if step.with_std else None
            elif step not in (None, "passthrough"):
                return None
        return cls(pipeline, columns, fill, mean, scale)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        series = [frame[column] for column in self.columns]
        if not all(isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf" for s in series):
            return self.pipeline.transform(frame[self.columns])
        values = np.column_stack([s.to_numpy(dtype=np.float64) for s in series])
        if np.isinf(values).any():
            return self.pipeline.transform(frame[self.columns])
        if self.fill is not None:
            values = np.where(np.isnan(values), self.fill, values)
        if self.mean is not None:
            values -= self.mean
        if self.scale is not None:
            values /= self.scale
        return values


class PipelinePart:
    """A fitted part of the featurizer that transforms its own columns through scikit-learn."""

    def __init__(self, transformer, columns: list[str]):
        self.transformer, self.columns = transformer, columns

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        block = self.transformer.transform(frame[self.columns])
        return block.toarray() if hasattr(block, "toarray") else np.asarray(block)


def featurizer_parts(featurizer) -> list | None:
    """A fitted ``ColumnTransformer`` as its parts in output order, or None when it must be used whole
    (another featurizer, sparse or pandas output, passthrough columns)."""
    from sklearn.compose import ColumnTransformer

    if type(featurizer) is not ColumnTransformer or featurizer.sparse_threshold != 0:
        return None
    if getattr(featurizer, "_sklearn_output_config", {}).get("transform", "default") != "default":
        return None
    parts = []
    for _, transformer, columns in featurizer.transformers_:
        if transformer == "drop":
            continue
        if transformer == "passthrough" or not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            return None
        parts.append(NumericPart.of(transformer, columns) or PipelinePart(transformer, columns))
    return parts or None


def _imputed_values(imputer) -> np.ndarray | None:
    """What a fitted imputer writes in place of NaN, column by column; None when it does more than that (marks
    missing values, leaves out empty columns, treats another value as missing)."""
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
        return None
    statistics = np.asarray(imputer.statistics_)
    if statistics.dtype.kind != "f" or not np.isfinite(statistics).all():
        return None
    return statistics


def lightgbm_booster(estimator):
    """The Booster of LightGBM's own scikit-learn classifier or regressor with a built-in objective, else None."""
    kind = type(estimator)
    if kind.__module__ != "lightgbm.sklearn" or kind.__name__ not in ("LGBMClassifier", "LGBMRegressor"):
        return None
    if callable(estimator.objective):  # a custom objective's scores are not probabilities: LightGBM's path knows
        return None
    return estimator.booster_
