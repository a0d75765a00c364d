"""The ``retrain`` flow: a new candidate model from a data version, reviewed, and promoted to champion
only when it passes the review's gate and beats the champion on the same test rows.

    data version -> baseline (AutoML) [and tune (a sweep)] -> rai_review of each (gate) -> the better one is
    the candidate -> the champion reviewed the same way -> promote (tag champion=true, emit amlflows.model.promoted)
    or keep the champion, with the reason -> decision report

It starts by hand, on a schedule, or from the drift event the ``monitor`` flow emits; the reason and
the event's payload are parameters, and stay on the candidate's tags.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from prefect import flow
from pydantic import Field, model_validator

from flows.baseline import BaselineParameters, baseline
from flows.parameters import FlowParameters, reference_check
from flows.rai_review import RAIReviewParameters, RAIReviewResult, rai_review
from flows.tune import TuneParameters, tune
from tasks.data import check_data_reference, resolve_data
from tasks.evaluation import RetrainResult, best_candidate, promotion_decision, promotion_event_payload
from tasks.events import emit_promotion_event
from tasks.models import ModelRef, find_champion, promote_model, resolve_model, tag_model_version
from tasks.rai import INSIGHTS, Insight, ScorecardThresholds, review_score
from tasks.reports import publish_retrain_report


class RetrainParameters(FlowParameters):
    """Parameters of the ``retrain`` flow; the defaults retrain the diabetes model on the newest data version."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    data: str = Field("azureml:diabetes@latest", description="The data version to train on: azureml:NAME:VERSION or @latest")
    reason: Literal["manual", "schedule", "event"] = Field("manual", description="Why this run started")
    event: dict[str, Any] = Field({}, description="The triggering event's payload (drift figures), when reason is event")
    model_name: str = Field("diabetes-baseline", description="The model the candidate is a version of; its champion is tagged champion=true")
    target_column: str = Field("Diabetic", description="The column to predict")
    timeout_minutes: float = Field(2, gt=0, description="AutoML's time budget")
    tune: bool = Field(False, description="Also tune the training script with a sweep on the data; the better reviewed model is the candidate")
    tune_trials: int = Field(6, ge=1, description="Sweep trials, when tune is on")
    max_trials: int | None = Field(None, ge=1, description="AutoML stops after this many trials")
    allowed_algorithms: list[str] = Field([], description="Azure algorithm names AutoML may use")
    review_train_data: str = Field("examples/data/diabetes-rai/train", description="The review's train rows (MLTable folder)")
    review_test_data: str = Field("examples/data/diabetes-rai/test", description="The review's test rows: candidate and champion are scored on these")
    insights: list[Insight] = Field(list(INSIGHTS), min_length=1, description="The review's insights")
    thresholds: ScorecardThresholds = Field(ScorecardThresholds(), description="The review's gate (the scorecard)")
    compute: str = Field("cpu-cluster", description="Compute cluster (created if missing); 'local' for none")
    experiment_name: str = Field("diabetes-retrain", description="MLflow / Azure ML experiment of the AutoML job")

    _data_is_a_reference = reference_check(check_data_reference, "data")

    @model_validator(mode="after")
    def _check(self) -> "RetrainParameters":
        if self.thresholds.primary_metric_threshold is None:
            raise ValueError(
                f"thresholds.primary_metric_threshold is empty: set it, since candidates and the champion are compared on "
                f"{self.thresholds.primary_metric}."
            )
        self.review("azureml:model:1")  # the review's own checks (metric names, cohorts, insights) fail here
        return self

    def review(self, model: str) -> RAIReviewParameters:
        return RAIReviewParameters(
            workspace=self.workspace, model=model, train_data=self.review_train_data, test_data=self.review_test_data,
            target_column=self.target_column, insights=self.insights, thresholds=self.thresholds, compute=self.compute,
            treatment_features=["BMI"] if "causal" in self.insights else [],
        )




@flow(name="retrain")
def retrain(params: RetrainParameters = RetrainParameters.defaults()) -> RetrainResult:
    """Train a candidate on a data version, review it, and promote it only if it passes and beats the champion."""
    params = params.validated()
    workspace = params.workspace
    data = resolve_data(workspace, params.data)  # an unknown data version stops here: nothing trained, nothing changed
    champion = find_champion(workspace, params.model_name)
    models = _train_candidates(params, data.reference)
    metric = params.thresholds.primary_metric
    reviews = [rai_review(params.review(model.reference)) for model in models]
    scores = [review_score(review.checks, metric) for review in reviews]
    best = best_candidate([review.passed for review in reviews], scores, metric)
    candidate, review, candidate_score = models[best], reviews[best], scores[best]
    promote, decision, champion_score = _judge_against_champion(params, candidate, review, candidate_score, champion)
    if promote:
        promote_model(workspace, candidate, champion, {"promoted_because": decision[:500]})
    champion_after = candidate.reference if promote else (champion.reference if champion else None)
    tag_model_version(workspace, candidate, {
        "retrain_reason": params.reason, "retrain_data": data.reference, "retrain_decision": decision[:500],
        "retrain_candidates": json.dumps({m.reference: round(score, 4) for m, score in zip(models, scores)}),
        **({"retrain_event": json.dumps(params.event, sort_keys=True, default=str)[:1000]} if params.event else {}),
    })
    result = RetrainResult(
        data=data.reference, reason=params.reason, candidate=candidate.reference, review_passed=review.passed,
        metric=metric, candidate_score=candidate_score, champion_before=champion.reference if champion else None,
        champion_score=champion_score, promoted=promote, champion_after=champion_after, decision=decision, event=params.event,
    )
    if promote:  # for the deploy deployment's trigger: it rolls the new champion out
        event_id = emit_promotion_event(workspace, candidate, champion, promotion_event_payload(result), data)
        result = result.model_copy(update={"event_id": event_id})
    publish_retrain_report(result)
    return result


def _train_candidates(params: RetrainParameters, data: str) -> list[ModelRef]:
    """AutoML's best model on the data, and the tuned script's when ``tune`` asks for one."""
    workspace = params.workspace
    trained = baseline(BaselineParameters(
        workspace=workspace, data=data, target_column=params.target_column, timeout_minutes=params.timeout_minutes,
        max_trials=params.max_trials, allowed_algorithms=params.allowed_algorithms, compute=params.compute,
        experiment_name=params.experiment_name, model_name=params.model_name,
    ))
    models = [resolve_model(workspace, trained.model)]
    if params.tune:
        tuned = tune(TuneParameters(
            workspace=workspace, data=data, data_type="mltable", compute=params.compute,
            max_total_trials=params.tune_trials, experiment_name=f"{params.experiment_name}-tune", model_name=params.model_name,
        ))
        models.append(resolve_model(workspace, tuned.model))
    return models


def _judge_against_champion(params: RetrainParameters, candidate: ModelRef, review: RAIReviewResult, candidate_score: float,
                            champion: ModelRef | None) -> tuple[bool, str, float | None]:
    """Whether the candidate is promoted, why, and the champion's score, the champion reviewed like the candidate."""
    metric = params.thresholds.primary_metric
    if champion is not None and champion.reference == candidate.reference:
        return False, f"unchanged: {candidate.reference} is the champion already (the same data and settings trained it)", candidate_score
    champion_score = review_score(rai_review(params.review(champion.reference)).checks, metric) if champion else None
    promote, decision = promotion_decision(
        review.passed, review.reasons, metric, candidate_score, champion.reference if champion else None, champion_score
    )
    return promote, decision, champion_score
