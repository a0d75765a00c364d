"""The model an AutoML job produces: featurization and the best estimator in one scikit-learn object.

This module is pickled *by value* into the saved model (see ``driver.save_model``), so a
registered model loads wherever scikit-learn and the estimator's library are installed,
without localml. Keep it self-contained: no imports from localml.
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

    def _features(self, X) -> np.ndarray:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.feature_columns)
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"Input is missing the model's columns {missing}; it expects {list(self.feature_columns)}.")
        return self.featurizer.transform(frame[list(self.feature_columns)])

    def predict(self, X):
        predicted = self.estimator.predict(self._features(X))
        if self.classes is None:
            return np.asarray(predicted)
        return np.asarray(self.classes)[np.asarray(predicted).astype(int)]

    def predict_proba(self, X):
        return self.estimator.predict_proba(self._features(X))
