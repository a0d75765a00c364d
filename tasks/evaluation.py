"""Evaluation: two models scored side by side on the same held-out rows, and the rule that picks one.

Models and rows are read from the jobs' MLflow runs (the run id is the job's name), as they are on
Azure, so the comparison never depends on where a job ran.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from amlkit.automl.settings import MINIMIZED_METRICS
from amlkit.metrics import (
    CLASSIFICATION_METRIC_NAMES,
    LOWER_IS_BETTER,
    REGRESSION_METRIC_NAMES,
)
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import download_run_artifact

RegistrationRule = Literal["at_least_as_good", "better", "always"]


def metric_names(task_type: str) -> list[str]:
    """Azure's primary metric names for a task type (``classification`` or ``regression``).

    Example:
        ```python
        "AUC_weighted" in metric_names("classification")   # True
        ```
    """
    return list(CLASSIFICATION_METRIC_NAMES if task_type == "classification" else REGRESSION_METRIC_NAMES)


class RunArtifact(BaseModel):
    """A folder a job logged to its MLflow run (the run id is the job's name)."""

    run_id: str
    path: str


class ModelComparison(BaseModel):
    primary_metric: str
    maximize: bool
    rows: int = Field(description="Held-out rows both models were scored on")
    baseline: dict[str, float]
    candidate: dict[str, float]
    chart_png: bytes = Field(description="ROC curves (classification) or predicted against actual (regression)")

    @property
    def baseline_score(self) -> float:
        return self.baseline[self.primary_metric]

    @property
    def candidate_score(self) -> float:
        return self.candidate[self.primary_metric]

    @property
    def gain(self) -> float:
        """How much better the candidate is on the primary metric (negative: worse), whichever way the metric points."""
        difference = self.candidate_score - self.baseline_score
        return difference if self.maximize else -difference


@task(name="compare_models", **TRANSIENT_RETRIES)
def compare_models(
    workspace: str,
    baseline: RunArtifact,
    candidate: RunArtifact,
    test_data: RunArtifact,
    target_column: str,
    task_type: Literal["classification", "regression"],
    primary_metric: str,
) -> ModelComparison:
    """Score two MLflow models on the same held-out rows with Azure's AutoML metrics, and draw them.

    Example:
        ```python
        comparison = compare_models(
            "local",
            baseline=RunArtifact(run_id=automl_job, path="outputs/mlflow-model"),
            candidate=RunArtifact(run_id=refined_job, path="outputs/model"),
            test_data=RunArtifact(run_id=automl_job, path="outputs/test_data"),
            target_column="Diabetic", task_type="classification", primary_metric="AUC_weighted",
        )
        comparison.baseline_score, comparison.candidate_score
        ```
    """
    from tasks.charts import prediction_chart, roc_chart

    rows, models = _load_rows_and_models(workspace, test_data, {"AutoML best": baseline, "refined": candidate})
    X, y = _features_and_target(rows, target_column, test_data.run_id)
    scores, curves = _score_models(models, X, y, task_type)
    for label, values in scores.items():
        if primary_metric not in values:
            raise ValueError(f"{primary_metric} cannot be computed for the {label} model on these rows (one class only?).")
    chart = roc_chart(curves, primary_metric) if task_type == "classification" else prediction_chart(curves)
    comparison = ModelComparison(
        primary_metric=primary_metric,
        maximize=primary_metric not in MINIMIZED_METRICS,
        rows=len(X),
        baseline=scores["AutoML best"],
        candidate=scores["refined"],
        chart_png=chart,
    )
    get_run_logger().info(
        "%s on %d held-out rows: AutoML best %.4f, refined %.4f", primary_metric, len(X),
        comparison.baseline_score, comparison.candidate_score,
    )
    return comparison


def _load_rows_and_models(workspace: str, test_data: RunArtifact, models: dict[str, RunArtifact]):
    """The held-out rows as a DataFrame and each MLflow model loaded, by label."""
    import mlflow.sklearn
    import pandas as pd

    with tempfile.TemporaryDirectory() as staging:
        def download(artifact: RunArtifact) -> Path:
            return download_run_artifact(workspace, artifact.run_id, artifact.path, Path(staging) / artifact.run_id)

        rows = pd.read_csv(download(test_data) / "data.csv")
        return rows, {label: mlflow.sklearn.load_model(str(download(artifact))) for label, artifact in models.items()}


def _features_and_target(rows, target_column: str, run_id: str):
    if target_column not in rows.columns:
        raise ValueError(f"The held-out rows of {run_id} have no column '{target_column}'.")
    rows = rows.dropna(subset=[target_column])
    return rows.drop(columns=[target_column]), rows[target_column]


def _score_models(models: dict, X, y, task_type: str) -> tuple[dict[str, dict[str, float]], dict[str, tuple]]:
    """Each model's Azure metrics, and what its chart draws: (labels, probabilities) or (actual, predicted)."""
    from amlkit.metrics import classification_metrics, regression_metrics

    scores, curves = {}, {}
    # both models' probability columns follow the sorted labels; the AutoML model knows the labels themselves
    indices = np.searchsorted(np.asarray(models["AutoML best"].classes_), y) if task_type == "classification" else None
    for label, model in models.items():
        if task_type == "classification":
            probabilities = model.predict_proba(X)
            scores[label] = classification_metrics(indices, probabilities, probabilities.shape[1])
            curves[label] = (indices, probabilities)
        else:
            predicted = np.asarray(model.predict(X), dtype=float)
            scores[label] = regression_metrics(y, predicted, float(np.ptp(y)))
            curves[label] = (y.to_numpy(dtype=float), predicted)
    return scores, curves


def registration_decision(comparison: ModelComparison, rule: RegistrationRule, tolerance: float = 0.0) -> tuple[bool, str]:
    """Whether the candidate is registered under ``rule``, and why, in words.

    ``at_least_as_good``: its primary metric is no worse than the baseline's (less ``tolerance``);
    ``better``: it beats the baseline by more than ``tolerance``; ``always``: registered regardless.

    Example:
        ```python
        register, reason = registration_decision(comparison, "at_least_as_good")
        ```
    """
    metric = comparison.primary_metric
    figures = f"{metric} {comparison.candidate_score:.4f} against the AutoML best's {comparison.baseline_score:.4f}"
    if rule == "always":
        return True, f"registered as the rule is 'always' ({figures})"
    passes = comparison.gain >= -tolerance if rule == "at_least_as_good" else comparison.gain > tolerance
    wanted = "at least as good as" if rule == "at_least_as_good" else "better than"
    margin = f" (tolerance {tolerance:g})" if tolerance else ""
    verdict = "registered" if passes else "not registered"
    return passes, f"{verdict}: the rule asks for a model {wanted} the AutoML best{margin}; {figures}"


class RetrainResult(BaseModel):
    """What a retraining decided, and on which numbers."""

    data: str
    reason: str
    candidate: str
    review_passed: bool
    metric: str
    candidate_score: float = Field(description="The candidate's primary metric on the review's test rows")
    champion_before: str | None
    champion_score: float | None = Field(description="The champion's, on the same rows")
    promoted: bool
    champion_after: str | None
    decision: str
    event: dict = Field(default_factory=dict, description="The payload of the event that started the run")
    event_id: str | None = Field(None, description="The id of the amlflows.model.promoted event, when the run promoted")


def promotion_event_payload(result: RetrainResult) -> dict[str, Any]:
    """What a promotion event carries: the promoted candidate, the champion it replaced, why, and the numbers compared."""
    return {
        "model": result.candidate, "previous_champion": result.champion_before, "reason": result.reason,
        "decision": result.decision, "metric": result.metric, "candidate_score": result.candidate_score,
        "champion_score": result.champion_score,
    }


@task(name="promotion_decision")
def promotion_decision(review_passed: bool, reasons: list[str], metric: str, candidate: float, champion: str | None, champion_score: float | None) -> tuple[bool, str]:
    """Promote only a candidate that passed the gate and beats the champion (strictly) on ``metric``.

    Example:
        ```python
        promote, why = promotion_decision(True, [], "AUC_weighted", 0.97, "azureml:diabetes-baseline:1", 0.95)
        ```
    """
    if not review_passed:
        return False, f"not promoted: the candidate failed the review ({'; '.join(reasons)})"
    if champion is None:
        return True, f"promoted: it passed the review ({metric} {candidate:.4f}) and there was no champion"
    better = candidate < champion_score if metric in LOWER_IS_BETTER else candidate > champion_score
    comparison = f"{metric} {candidate:.4f} against the champion {champion}'s {champion_score:.4f} on the same test rows"
    return (True, f"promoted: it passed the review and beats the champion: {comparison}") if better else (
        False, f"not promoted: it passed the review but does not beat the champion: {comparison}"
    )


def best_candidate(passed: list[bool], scores: list[float], metric: str) -> int:
    """The index of the model to put forward: one that passed its review if any did, then the best ``metric``."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return max(range(len(scores)), key=lambda i: (passed[i], sign * scores[i]))
