"""The scorecard: thresholds a reviewed model must meet before it moves forward, and the verdict with reasons.

A threshold left as None is not checked. Each check says what was measured, against what, and whether it
passed, so a failed verdict names exactly the thresholds the model missed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from amlkit.metrics import LOWER_IS_BETTER


@dataclass
class Thresholds:
    primary_metric: str = "accuracy"
    #: the primary metric must be at least this (at most, for an error or a loss)
    primary_metric_threshold: float | None = None
    max_worst_cohort_error_rate: float | None = None
    max_fairness_gap: float | None = None
    fairness_metric: str = "accuracy"
    #: cohorts smaller than this share of the test rows are not judged (their rates are noise)
    min_cohort_share: float = 0.05


def scorecard(insights: dict, thresholds: Thresholds) -> dict:
    """``{"passed": bool, "checks": [...], "reasons": [...], "thresholds": {...}}`` for the gathered ``insights``."""
    checks = []
    if thresholds.primary_metric_threshold is not None:
        value = insights["overview"]["metrics"].get(thresholds.primary_metric)
        if value is None:
            raise ValueError(
                f"The scorecard checks {thresholds.primary_metric}, which the review did not measure; "
                f"it measured: {', '.join(insights['overview']['metrics'])}."
            )
        operator = "<=" if thresholds.primary_metric in LOWER_IS_BETTER else ">="
        checks.append(_check(thresholds.primary_metric, thresholds.primary_metric, value, operator, thresholds.primary_metric_threshold))
    if thresholds.max_worst_cohort_error_rate is not None:
        worst = _worst_cohort(insights["error_analysis"], thresholds.min_cohort_share)
        checks.append(_check("worst_cohort_error_rate", f"error rate of the worst cohort ({worst['cohort']})", worst["error_rate"], "<=",
                             thresholds.max_worst_cohort_error_rate))
    if thresholds.max_fairness_gap is not None:
        fairness = insights["fairness"]
        gap = fairness["largest_gap"].get(thresholds.fairness_metric)
        if gap is None:
            raise ValueError(
                f"The scorecard checks the {thresholds.fairness_metric} gap, which the fairness analysis did not measure; "
                f"it measured: {', '.join(fairness['largest_gap'])}."
            )
        checks.append(_check(f"{thresholds.fairness_metric}_gap", f"largest {thresholds.fairness_metric} gap between {fairness['feature']} cohorts", gap, "<=",
                             thresholds.max_fairness_gap))
    failed = [c for c in checks if not c["passed"]]
    return {
        "passed": not failed,
        "checks": checks,
        "reasons": [f"{c['name']} is {c['value']:.4f}, the threshold is {c['threshold']}" for c in failed],
        "thresholds": asdict(thresholds),
    }


def _check(key: str, name: str, value: float, operator: str, limit: float) -> dict:
    passed = value >= limit if operator == ">=" else value <= limit
    return {"key": key, "name": name, "value": float(value), "threshold": f"{operator} {limit:g}", "passed": bool(passed)}


def _worst_cohort(error_analysis: dict, min_share: float) -> dict:
    judged = [n for n in error_analysis["tree"] if n["leaf"] and n["rows"] >= min_share * error_analysis["rows"]]
    return max(judged or [error_analysis["tree"][0]], key=lambda n: n["error_rate"])


def judged_insights(review, cohort_features: dict[str, list[float] | None], max_depth: int = 3, min_child_samples: int = 20) -> dict:
    """What the scorecard judges (metrics, error analysis, fairness), computed here from a review rather than
    read from a review pipeline's output: for a review whose dashboard was built elsewhere (Azure)."""
    from amlkit.rai.error_analysis import analyze_errors
    from amlkit.rai.fairness import fairness_by_first_cohort_feature
    from amlkit.rai.review import model_metrics

    insights = {
        "overview": {"task": review.task, "target": review.target, "rows": len(review.test), "metrics": model_metrics(review)},
        "error_analysis": analyze_errors(review, max_depth, min_child_samples),
    }
    if cohort_features:
        insights["fairness"] = fairness_by_first_cohort_feature(review, cohort_features)
    return insights
