"""Azure ML's early termination policies for sweeps, decided from the trials' metric histories (no I/O).

The input is the SDK's own dict form of a sweep job's ``early_termination``
(``sweep_job._to_dict()["early_termination"]``), for example::

    {"type": "bandit", "slack_factor": 0.1, "evaluation_interval": 1, "delay_evaluation": 2}

Azure: "Each time the training script logs the primary metric counts as one interval." Interval ``k`` of a
trial is the ``k``-th value it logged (1-based). A running trial is judged at interval ``k`` when
``k % evaluation_interval == 0`` and ``k > delay_evaluation`` ("delay_evaluation delays the first policy
evaluation for a specified number of intervals"); an ``evaluation_interval`` of 0 (the SDK's default for
``BanditPolicy`` and ``TruncationSelectionPolicy``) means every interval. Each (trial, interval) is judged once,
against the data available when it is judged; values that are NaN are ignored.

"If no policy is specified, the hyperparameter tuning service lets all training jobs execute to completion."
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amlkit.errors import SpecError, UnsupportedFeatureError

POLICY_FIELDS: dict[str, tuple[str, ...]] = {
    "bandit": ("slack_factor", "slack_amount"),
    "median_stopping": (),
    "truncation_selection": ("truncation_percentage", "exclude_finished_jobs"),
}
_COMMON_FIELDS = ("type", "evaluation_interval", "delay_evaluation")


@dataclass
class TrialProgress:
    """One trial's primary metric so far: ``values[k - 1]`` is what it logged at interval ``k``."""

    name: str
    values: list[float]
    running: bool


def _whole(kind: str, policy: Mapping, key: str, default: int) -> int:
    value = policy.get(key)
    if value is None:
        return default
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise SpecError(
            f"early_termination ({kind}) has {key}={value!r}. Give {key} as a whole number >= 0 (in intervals: "
            "each logging of the primary metric is one interval)."
        )
    return int(value)


def _slack(policy: Mapping, key: str) -> float | None:
    value = policy.get(key)
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise SpecError(f"early_termination (bandit) has {key}={value!r}. Give {key} as a number >= 0.")
    return float(value) if value > 0 else None  # the SDK's default 0 means "not given"


class EarlyTermination:
    """An Azure early termination policy (or none), deciding which running trials to stop.

    ``EarlyTermination(policy, maximize)`` takes the SDK's ``early_termination`` dict (None: no policy, nothing is
    ever stopped) and whether the primary metric is maximized. It raises ``SpecError`` for invalid
    fields and ``UnsupportedFeatureError`` for an unknown policy type.

    **Bandit** (``BanditPolicy``): Azure: "Bandit policy is based on slack factor/slack amount and evaluation
    interval. Bandit policy ends a job when the primary metric isn't within the specified slack factor/slack
    amount of the most successful job." At interval ``k`` the trial's value at ``k`` is compared with the best
    value at ``k`` among all trials that reached ``k`` (finished ones included). Maximizing, it is stopped if
    ``value < best / (1 + slack_factor)`` or ``value < best - slack_amount``; minimizing, if
    ``value > best * (1 + slack_factor)`` or ``value > best + slack_amount``. Exactly one of ``slack_factor``
    ("the ratio used to calculate the allowed distance from the best performing trial") and ``slack_amount``
    ("the absolute distance allowed from the best performing trial") must be given (> 0). As in Azure, the
    slack_factor rule assumes a positive metric.

    **Median stopping** (``MedianStoppingPolicy``): Azure: "Median stopping is an early termination policy based
    on running averages of primary metrics reported by the jobs. This policy computes running averages across all
    training jobs and stops jobs whose primary metric value is worse than the median of the averages." At
    interval ``k``, the running averages (the mean of the first ``k`` values) of the *other* trials that reached
    ``k`` are taken; the trial is stopped if its best value in its first ``k`` is worse than their median. With
    no other trial at ``k`` nothing is stopped.

    **Truncation selection** (``TruncationSelectionPolicy``): Azure: "Truncation selection cancels a percentage
    of lowest performing jobs at each evaluation interval. Jobs are compared using the primary metric." and
    "exclude_finished_jobs: specifies whether to exclude finished jobs when applying the policy." At interval
    ``k`` the trials that reached ``k`` are ranked by their value at ``k`` (finished trials left out with
    ``exclude_finished_jobs=True``); the lowest ``floor(n * truncation_percentage / 100)`` of the ``n`` ranked
    trials are cut, but only running ones are stopped. Equal values are ranked by trial name.
    ``truncation_percentage`` is a whole number from 1 to 99. ``exclude_finished_jobs`` is not in azure-ai-ml
    1.35's ``TruncationSelectionPolicy`` (its dict form lacks it): it is read when present and defaults to False.
    """

    def __init__(self, policy: Mapping[str, Any] | None, maximize: bool):
        self.maximize = bool(maximize)
        self.kind: str | None = None
        self.evaluation_interval = 1
        self.delay_evaluation = 0
        self.slack_factor: float | None = None
        self.slack_amount: float | None = None
        self.truncation_percentage: int | None = None
        self.exclude_finished_jobs = False
        self._judged: set[tuple[str, int]] = set()
        self._stopped: set[str] = set()
        if policy is None:
            return
        self.kind = _policy_kind(policy)
        self.evaluation_interval = max(1, _whole(self.kind, policy, "evaluation_interval", 1))
        self.delay_evaluation = _whole(self.kind, policy, "delay_evaluation", 0)
        if self.kind == "bandit":
            self.slack_factor, self.slack_amount = _bandit_slack(policy)
        elif self.kind == "truncation_selection":
            self.truncation_percentage, self.exclude_finished_jobs = _truncation(policy)

    def evaluates_at(self, interval: int) -> bool:
        """Whether the policy judges a trial at ``interval`` (1-based); never without a policy."""
        return (
            self.kind is not None and interval > self.delay_evaluation and interval % self.evaluation_interval == 0
        )

    def to_stop(self, trials: Sequence[TrialProgress]) -> list[str]:
        """The names of the running trials to stop now, in the order given.

        Each running trial is judged at every interval it reached that the policy evaluates and that was not
        judged before; a trial is returned at most once over the policy's life.
        """
        if self.kind is None:
            return []
        names = [trial.name for trial in trials]
        if len(set(names)) != len(names):
            raise ValueError(f"trial names must be unique, got {names}")
        stop = []
        for trial in trials:
            if not trial.running or trial.name in self._stopped:
                continue
            for interval in range(1, len(trial.values) + 1):
                if not self.evaluates_at(interval) or (trial.name, interval) in self._judged:
                    continue
                self._judged.add((trial.name, interval))
                if self._judge(trial, interval, trials):
                    self._stopped.add(trial.name)
                    stop.append(trial.name)
                    break
        return stop

    def _worse(self, a: float, b: float) -> bool:
        return a < b if self.maximize else a > b

    def _judge(self, trial: TrialProgress, k: int, trials: Sequence[TrialProgress]) -> bool:
        value = trial.values[k - 1]
        if math.isnan(value):
            return False
        if self.kind == "bandit":
            reached = [t.values[k - 1] for t in trials if len(t.values) >= k and not math.isnan(t.values[k - 1])]
            best = max(reached) if self.maximize else min(reached)
            if self.slack_factor is not None:
                bound = best / (1 + self.slack_factor) if self.maximize else best * (1 + self.slack_factor)
            else:
                bound = best - self.slack_amount if self.maximize else best + self.slack_amount
            return self._worse(value, bound)
        if self.kind == "median_stopping":
            averages = []
            for other in trials:
                if other is trial or len(other.values) < k:
                    continue
                seen = [v for v in other.values[:k] if not math.isnan(v)]
                if seen:
                    averages.append(statistics.fmean(seen))
            if not averages:
                return False
            own = [v for v in trial.values[:k] if not math.isnan(v)]
            best = max(own) if self.maximize else min(own)
            return self._worse(best, statistics.median(averages))
        # truncation_selection
        pool = [
            t for t in trials
            if len(t.values) >= k and not math.isnan(t.values[k - 1])
            and (t.running or not self.exclude_finished_jobs or t is trial)
        ]
        cut = len(pool) * self.truncation_percentage // 100
        sign = 1 if self.maximize else -1
        ranked = sorted(pool, key=lambda t: (sign * t.values[k - 1], t.name))  # worst first
        return any(t is trial for t in ranked[:cut])

    def __repr__(self) -> str:
        return f"EarlyTermination({self.kind!r}, maximize={self.maximize})"


def _policy_kind(policy: Any) -> str:
    """The policy's type, once the policy is known to be a mapping of that type's fields only."""
    if not isinstance(policy, Mapping):
        raise SpecError(
            f"early_termination must be a policy such as BanditPolicy(slack_factor=0.1) (or None), got {policy!r}."
        )
    kind = policy.get("type")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind not in POLICY_FIELDS:
        raise UnsupportedFeatureError(
            f"the early termination policy {policy.get('type')!r}",
            "Use bandit, median_stopping or truncation_selection (BanditPolicy, MedianStoppingPolicy, "
            "TruncationSelectionPolicy).",
        )
    unknown = sorted(set(policy) - set(_COMMON_FIELDS) - set(POLICY_FIELDS[kind]))
    if unknown:
        raise SpecError(
            f"early_termination ({kind}) has unexpected field(s) {', '.join(unknown)}. "
            f"{kind} takes {', '.join(_COMMON_FIELDS[1:] + POLICY_FIELDS[kind])}."
        )
    return kind


def _bandit_slack(policy: Mapping) -> tuple[float | None, float | None]:
    """``(slack_factor, slack_amount)``: exactly one of them is set."""
    factor, amount = _slack(policy, "slack_factor"), _slack(policy, "slack_amount")
    if factor is None and amount is None:
        raise SpecError(
            "early_termination (bandit) needs slack_factor or slack_amount. E.g. "
            "BanditPolicy(slack_factor=0.1) stops trials more than 10% worse than the best one, "
            "BanditPolicy(slack_amount=0.2) trials more than 0.2 worse."
        )
    if factor is not None and amount is not None:
        raise SpecError("early_termination (bandit) has both slack_factor and slack_amount. Give only one of them.")
    return factor, amount


def _truncation(policy: Mapping) -> tuple[int, bool]:
    """``(truncation_percentage, exclude_finished_jobs)`` of a truncation selection policy."""
    percentage = policy.get("truncation_percentage")
    if not isinstance(percentage, numbers.Integral) or isinstance(percentage, bool) or not 1 <= percentage <= 99:
        raise SpecError(
            f"early_termination (truncation_selection) has truncation_percentage={percentage!r}. Give the "
            "percentage of lowest performing trials to stop at each evaluation, a whole number from 1 to 99."
        )
    exclude = policy.get("exclude_finished_jobs", False)
    if exclude is None:
        exclude = False
    if not isinstance(exclude, bool):
        raise SpecError(
            f"early_termination (truncation_selection) has exclude_finished_jobs={exclude!r}. Give True or False."
        )
    return int(percentage), exclude
