"""The rule that decides whether a refined model is registered, for metrics either way up."""

import pytest

from tasks.evaluation import ModelComparison, registration_decision


def comparison(baseline: float, candidate: float, metric: str = "AUC_weighted", maximize: bool = True) -> ModelComparison:
    return ModelComparison(
        primary_metric=metric, maximize=maximize, rows=100, baseline={metric: baseline}, candidate={metric: candidate}, chart_png=b""
    )


@pytest.mark.parametrize(
    "rule, tolerance, baseline, candidate, registered",
    [
        ("at_least_as_good", 0.0, 0.90, 0.90, True),
        ("at_least_as_good", 0.0, 0.90, 0.89, False),
        ("at_least_as_good", 0.02, 0.90, 0.89, True),
        ("better", 0.0, 0.90, 0.90, False),
        ("better", 0.0, 0.90, 0.91, True),
        ("better", 0.02, 0.90, 0.91, False),
        ("always", 0.0, 0.90, 0.10, True),
    ],
)
def test_rules_on_a_metric_to_maximize(rule, tolerance, baseline, candidate, registered):
    decided, reason = registration_decision(comparison(baseline, candidate), rule, tolerance)
    assert decided is registered
    assert reason.startswith("registered" if registered else "not registered")
    assert f"AUC_weighted {candidate:.4f} against the AutoML best's {baseline:.4f}" in reason


def test_a_smaller_error_is_better():
    metric = "normalized_root_mean_squared_error"
    assert registration_decision(comparison(0.10, 0.08, metric, maximize=False), "better")[0]
    assert not registration_decision(comparison(0.10, 0.12, metric, maximize=False), "at_least_as_good")[0]
    assert comparison(0.10, 0.08, metric, maximize=False).gain == pytest.approx(0.02)


def test_the_reason_names_the_rule_and_tolerance():
    _, reason = registration_decision(comparison(0.90, 0.80), "at_least_as_good", 0.05)
    assert "at least as good as the AutoML best (tolerance 0.05)" in reason
