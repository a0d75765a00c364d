"""Azure ML's AutoML metrics, computed the way Azure defines them.

``norm_macro_recall`` rescales macro recall so that random guessing scores 0;
the normalized regression errors divide by the range of the target.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn import metrics as sk

#: The names each function below returns (AUC and average precision need both classes in y_true).
CLASSIFICATION_METRIC_NAMES = (
    "accuracy", "balanced_accuracy", "norm_macro_recall", "precision_score_weighted", "recall_score_weighted",
    "f1_score_weighted", "log_loss", "AUC_weighted", "average_precision_score_weighted",
)
REGRESSION_METRIC_NAMES = (
    "root_mean_squared_error", "normalized_root_mean_squared_error", "mean_absolute_error",
    "normalized_mean_absolute_error", "r2_score", "spearman_correlation",
)
#: Errors and losses: lower is better.
LOWER_IS_BETTER = frozenset({
    "log_loss", "root_mean_squared_error", "normalized_root_mean_squared_error", "mean_absolute_error",
    "normalized_mean_absolute_error",
})


def classification_metrics(y_true, probabilities: np.ndarray, n_classes: int) -> dict[str, float]:
    """Metrics from the true class indices and the predicted class probabilities."""
    y_true = np.asarray(y_true).astype(int)
    predicted = probabilities.argmax(axis=1)
    labels = list(range(n_classes))
    macro_recall = sk.recall_score(y_true, predicted, average="macro", labels=labels, zero_division=0)
    chance = 1.0 / n_classes
    values = {
        "accuracy": sk.accuracy_score(y_true, predicted),
        "balanced_accuracy": sk.balanced_accuracy_score(y_true, predicted),
        "norm_macro_recall": max(0.0, (macro_recall - chance) / (1 - chance)),
        "precision_score_weighted": sk.precision_score(y_true, predicted, average="weighted", labels=labels, zero_division=0),
        "recall_score_weighted": sk.recall_score(y_true, predicted, average="weighted", labels=labels, zero_division=0),
        "f1_score_weighted": sk.f1_score(y_true, predicted, average="weighted", labels=labels, zero_division=0),
        "log_loss": sk.log_loss(y_true, np.clip(probabilities, 1e-15, 1), labels=labels),
    }
    present = np.unique(y_true)
    if len(present) > 1:
        onehot = np.eye(n_classes)[y_true]
        if n_classes == 2:
            values["AUC_weighted"] = sk.roc_auc_score(y_true, probabilities[:, 1])
            values["average_precision_score_weighted"] = sk.average_precision_score(y_true, probabilities[:, 1])
        else:
            values["AUC_weighted"] = sk.roc_auc_score(onehot[:, present], probabilities[:, present], average="weighted")
            values["average_precision_score_weighted"] = sk.average_precision_score(
                onehot[:, present], probabilities[:, present], average="weighted"
            )
    return {k: float(v) for k, v in values.items()}


def regression_metrics(y_true, predicted, target_range: float) -> dict[str, float]:
    y_true, predicted = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    spread = target_range if target_range > 0 else 1.0
    rmse = float(np.sqrt(sk.mean_squared_error(y_true, predicted)))
    mae = float(sk.mean_absolute_error(y_true, predicted))
    correlation = spearmanr(y_true, predicted).statistic if np.std(predicted) > 0 else 0.0
    return {
        "root_mean_squared_error": rmse,
        "normalized_root_mean_squared_error": rmse / spread,
        "mean_absolute_error": mae,
        "normalized_mean_absolute_error": mae / spread,
        "r2_score": float(sk.r2_score(y_true, predicted)),
        "spearman_correlation": float(np.nan_to_num(correlation)),
    }


def loss(value: float, maximize: bool) -> float:
    """FLAML minimizes a loss: 1 - score for metrics Azure maximizes, the value itself otherwise."""
    return 1.0 - value if maximize else value
