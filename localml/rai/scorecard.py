"""The scorecard: thresholds a reviewed model must meet before it moves forward, and the verdict with reasons.

A threshold left as None is not checked. Each check says what was measured, against what, and whether it
passed, so a failed verdict names exactly the thresholds the model missed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Thresholds:
    primary_metric: str = "accuracy"
    min_primary_metric: float | None = None
    max_worst_cohort_error_rate: float | None = None
    max_fairness_gap: float | None = None
    fairness_metric: str = "accuracy"
    #: cohorts smaller than this share of the test rows are not judged (their rates are noise)
    min_cohort_share: float = 0.02


def scorecard(insights: dict, thresholds: Thresholds) -> dict:
    """``{"passed": bool, "checks": [...], "reasons": [...], "thresholds": {...}}`` for the gathered ``insights``."""
    checks = []
    if thresholds.min_primary_metric is not None:
        value = insights["overview"]["metrics"].get(thresholds.primary_metric)
        if value is None:
            raise ValueError(
                f"The scorecard checks {thresholds.primary_metric}, which the review did not measure; "
                f"it measured: {', '.join(insights['overview']['metrics'])}."
            )
        checks.append(_check(thresholds.primary_metric, value, ">=", thresholds.min_primary_metric))
    if thresholds.max_worst_cohort_error_rate is not None:
        worst = _worst_cohort(insights["error_analysis"], thresholds.min_cohort_share)
        checks.append(_check(f"error rate of the worst cohort ({worst['cohort']})", worst["error_rate"], "<=",
                             thresholds.max_worst_cohort_error_rate))
    if thresholds.max_fairness_gap is not None:
        fairness = insights["fairness"]
        gap = fairness["largest_gap"].get(thresholds.fairness_metric)
        if gap is None:
            raise ValueError(
                f"The scorecard checks the {thresholds.fairness_metric} gap, which the fairness analysis did not measure; "
                f"it measured: {', '.join(fairness['largest_gap'])}."
            )
        checks.append(_check(f"largest {thresholds.fairness_metric} gap between {fairness['feature']} cohorts", gap, "<=",
                             thresholds.max_fairness_gap))
    failed = [c for c in checks if not c["passed"]]
    return {
        "passed": not failed,
        "checks": checks,
        "reasons": [f"{c['name']} is {c['value']:.4f}, the threshold is {c['threshold']}" for c in failed],
        "thresholds": asdict(thresholds),
    }


def _check(name: str, value: float, operator: str, limit: float) -> dict:
    passed = value >= limit if operator == ">=" else value <= limit
    return {"name": name, "value": float(value), "threshold": f"{operator} {limit:g}", "passed": bool(passed)}


def _worst_cohort(error_analysis: dict, min_share: float) -> dict:
    judged = [n for n in error_analysis["tree"] if n["leaf"] and n["rows"] >= min_share * error_analysis["rows"]]
    return max(judged or [error_analysis["tree"][0]], key=lambda n: n["error_rate"])
