"""amlkit.sweep.policies: Azure's early termination policies on deterministic metric curves."""

from __future__ import annotations

import pytest
from azure.ai.ml import command
from azure.ai.ml.sweep import (
    BanditPolicy,
    Choice,
    MedianStoppingPolicy,
    TruncationSelectionPolicy,
)

from amlkit.errors import SpecError, UnsupportedFeatureError
from amlkit.sweep.policies import EarlyTermination, TrialProgress

ENV = "AzureML-sklearn-1.5@latest"


def policy_dict(policy) -> dict | None:
    """The SDK's dict form of ``policy`` (what the driver reads from ``sweep_job._to_dict()``)."""
    job = command(command="python train.py", environment=ENV, inputs={"x": 1})
    sweep = job(x=Choice([1, 2])).sweep(
        sampling_algorithm="random", primary_metric="m", goal="Maximize", early_termination_policy=policy
    )
    return sweep._to_dict().get("early_termination")


def progress(curves: dict[str, list[float]], step: int | None = None, finished=()) -> list[TrialProgress]:
    """The trials as the driver sees them after ``step`` loggings (all of each curve when None)."""
    return [
        TrialProgress(name, list(values[:step] if step else values), running=name not in finished)
        for name, values in curves.items()
    ]


def run(policy: EarlyTermination, curves: dict[str, list[float]], steps: int) -> dict[int, list[str]]:
    """Feed the curves one logging at a time; a stopped trial logs nothing more and is no longer running."""
    stopped: dict[str, int] = {}
    decisions = {}
    for step in range(1, steps + 1):
        trials = [
            TrialProgress(name, values[: stopped.get(name, step)], running=name not in stopped)
            for name, values in curves.items()
        ]
        decisions[step] = policy.to_stop(trials)
        stopped.update({name: step for name in decisions[step]})
    return decisions


def test_sdk_dict_forms_are_the_input_format():
    assert policy_dict(BanditPolicy(slack_factor=0.1, evaluation_interval=1, delay_evaluation=2)) == {
        "type": "bandit", "slack_factor": 0.1, "evaluation_interval": 1, "delay_evaluation": 2,
    }
    assert policy_dict(MedianStoppingPolicy()) == {"type": "median_stopping", "evaluation_interval": 1, "delay_evaluation": 0}
    assert policy_dict(TruncationSelectionPolicy(truncation_percentage=25)) == {
        "type": "truncation_selection", "truncation_percentage": 25, "evaluation_interval": 0, "delay_evaluation": 0,
    }
    assert policy_dict(None) is None


def test_bandit_stops_the_trial_out_of_the_slack_at_interval_3_and_not_before_the_delay():
    policy = EarlyTermination(
        policy_dict(BanditPolicy(slack_factor=0.1, evaluation_interval=1, delay_evaluation=2)), maximize=True
    )
    curves = {
        "best": [1.0, 1.0, 1.0, 1.0],
        "slow": [0.5, 0.5, 0.85, 0.99],  # out of the slack at 1 and 2 too, but those are delayed; 0.85 < 1 / 1.1
        "close": [0.5, 0.6, 0.95, 0.99],  # within the slack from interval 3 on
    }
    assert run(policy, curves, 4) == {1: [], 2: [], 3: ["slow"], 4: []}


def test_bandit_with_slack_amount():
    policy = EarlyTermination(policy_dict(BanditPolicy(slack_amount=0.2)), maximize=True)
    assert policy.evaluation_interval == 1  # the SDK's default 0 means every interval
    assert policy.to_stop(progress({"a": [1.0], "b": [0.85], "c": [0.75]})) == ["c"]


def test_bandit_minimizing():
    policy = EarlyTermination(policy_dict(BanditPolicy(slack_factor=0.1)), maximize=False)
    assert policy.to_stop(progress({"a": [1.0], "b": [1.05], "c": [1.2]})) == ["c"]  # 1.2 > 1.0 * 1.1
    amount = EarlyTermination(policy_dict(BanditPolicy(slack_amount=0.5)), maximize=False)
    assert amount.to_stop(progress({"a": [2.0], "b": [2.4], "c": [2.6]})) == ["c"]  # 2.6 > 2.0 + 0.5


def test_bandit_compares_with_finished_trials_and_only_at_evaluation_intervals():
    policy = EarlyTermination(policy_dict(BanditPolicy(slack_factor=0.1, evaluation_interval=2)), maximize=True)
    curves = {"done": [1.0, 1.0, 1.0, 1.0], "zigzag": [0.1, 0.95, 0.1, 0.5]}
    # judged at 2 (within the slack) and 4 (out of it); 1 and 3 are not evaluation intervals
    assert policy.to_stop(progress(curves, step=3, finished={"done"})) == []
    assert policy.to_stop(progress(curves, step=4, finished={"done"})) == ["zigzag"]


def test_median_stopping_stops_a_trial_below_the_median_and_not_one_above():
    policy = EarlyTermination(policy_dict(MedianStoppingPolicy(delay_evaluation=1)), maximize=True)
    curves = {
        "a": [0.9, 0.95],   # running average 0.925
        "b": [0.85, 0.9],   # best 0.9 > median of the others' averages (0.925, 0.89, 0.325) = 0.89
        "c": [0.86, 0.92],  # running average 0.89
        "d": [0.3, 0.35],   # best 0.35 < median of (0.925, 0.875, 0.89) = 0.89
    }
    assert policy.to_stop(progress(curves, step=1)) == []  # interval 1 is delayed
    assert policy.to_stop(progress(curves)) == ["d"]


def test_median_stopping_minimizing_and_alone():
    policy = EarlyTermination(policy_dict(MedianStoppingPolicy()), maximize=False)
    assert policy.to_stop(progress({"a": [1.0], "b": [1.2], "c": [5.0]})) == ["c"]
    alone = EarlyTermination(policy_dict(MedianStoppingPolicy()), maximize=True)
    assert alone.to_stop(progress({"only": [0.0, 0.0, 0.0]})) == []  # no other trial to compare with


def test_median_stopping_compares_with_the_other_trials_only():
    policy = EarlyTermination(policy_dict(MedianStoppingPolicy()), maximize=True)
    # b: 0.6 < median(1.0, 0.5) = 0.75; counting b's own average the median would be 0.6 and b would stay
    assert policy.to_stop(progress({"a": [1.0], "b": [0.6], "c": [0.5]})) == ["b", "c"]


def test_truncation_cuts_the_worst_of_4_trials_at_each_evaluation():
    policy = EarlyTermination(
        policy_dict(TruncationSelectionPolicy(truncation_percentage=25, evaluation_interval=2)), maximize=True
    )
    curves = {
        "a": [0.9, 0.9, 0.9, 0.9],
        "b": [0.8, 0.8, 0.8, 0.8],
        "c": [0.7, 0.7, 0.6, 0.6],  # the worst at interval 4
        "d": [0.5, 0.5, 0.7, 0.7],  # the worst at interval 2
    }
    assert policy.to_stop(progress(curves)) == ["c", "d"]

    # fed step by step, d stops at 2; at 4 only 3 trials remain and floor(3 * 25 / 100) = 0 are cut
    assert run(
        EarlyTermination(policy_dict(TruncationSelectionPolicy(truncation_percentage=25, evaluation_interval=2)), True),
        curves, 4,
    ) == {1: [], 2: ["d"], 3: [], 4: []}


def test_truncation_minimizing_cuts_the_highest():
    policy = EarlyTermination(policy_dict(TruncationSelectionPolicy(truncation_percentage=50)), maximize=False)
    assert policy.to_stop(progress({"a": [1.0], "b": [4.0], "c": [2.0], "d": [3.0]})) == ["b", "d"]


def test_exclude_finished_jobs_changes_the_ranking():
    curves = {"a": [0.9], "b": [0.8], "c": [0.7], "d": [0.6], "done": [0.1]}
    form = policy_dict(TruncationSelectionPolicy(truncation_percentage=25))
    # counting the finished trial: 5 ranked, 1 cut, and that is the finished one: nothing to stop
    assert EarlyTermination(form, maximize=True).to_stop(progress(curves, finished={"done"})) == []
    # azure-ai-ml 1.35's TruncationSelectionPolicy has no exclude_finished_jobs; Azure's YAML and REST do
    excluding = EarlyTermination({**form, "exclude_finished_jobs": True}, maximize=True)
    assert excluding.exclude_finished_jobs is True
    assert excluding.to_stop(progress(curves, finished={"done"})) == ["d"]


def test_no_policy_never_stops():
    policy = EarlyTermination(policy_dict(None), maximize=True)
    assert policy.kind is None
    curves = {"good": [1.0] * 10, "awful": [-100.0] * 10}
    assert all(not stop for stop in run(policy, curves, 10).values())


def test_each_trial_and_interval_is_judged_once():
    policy = EarlyTermination(policy_dict(BanditPolicy(slack_factor=0.1)), maximize=True)
    curves = {"a": [1.0], "b": [0.5]}
    assert policy.to_stop(progress(curves)) == ["b"]
    assert policy.to_stop(progress(curves)) == []  # same data: b is returned only once

    # "late" was judged at interval 1 when it was alone (and so the best); a better trial arriving later
    # does not make interval 1 judged again
    policy = EarlyTermination(policy_dict(BanditPolicy(slack_factor=0.1)), maximize=True)
    assert policy.to_stop([TrialProgress("late", [0.5], True), TrialProgress("fast", [], True)]) == []
    assert policy.to_stop([TrialProgress("late", [0.5], True), TrialProgress("fast", [1.0], True)]) == []
    assert policy.to_stop([TrialProgress("late", [0.5, 0.5], True), TrialProgress("fast", [1.0, 1.0], True)]) == ["late"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (BanditPolicy(), "needs slack_factor or slack_amount"),
        (BanditPolicy(slack_factor=0.1, slack_amount=0.2), "both slack_factor and slack_amount. Give only one"),
        (BanditPolicy(slack_factor=-0.1), "slack_factor=-0.1"),
        (BanditPolicy(slack_factor=0.1, delay_evaluation=-1), "delay_evaluation=-1. Give delay_evaluation as a whole number >= 0"),
        (MedianStoppingPolicy(evaluation_interval=-2), "evaluation_interval=-2"),
        (TruncationSelectionPolicy(), "truncation_percentage=0.*from 1 to 99"),
        (TruncationSelectionPolicy(truncation_percentage=100), "truncation_percentage=100"),
    ],
)
def test_invalid_policies_are_rejected(policy, message):
    with pytest.raises(SpecError, match=message):
        EarlyTermination(policy_dict(policy), maximize=True)


def test_malformed_policy_dicts_are_rejected():
    with pytest.raises(UnsupportedFeatureError, match="'hyperband'"):
        EarlyTermination({"type": "hyperband"}, maximize=True)
    with pytest.raises(SpecError, match="unexpected field"):
        EarlyTermination({"type": "median_stopping", "slack_factor": 0.1}, maximize=True)
    with pytest.raises(SpecError, match="exclude_finished_jobs='yes'"):
        EarlyTermination({"type": "truncation_selection", "truncation_percentage": 10, "exclude_finished_jobs": "yes"}, True)
