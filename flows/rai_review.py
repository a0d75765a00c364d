"""The ``rai_review`` flow: a Responsible AI review of a registered model, and a scorecard whose verdict
gates its promotion.

    model version -> check model, data and features (seconds) -> register train/test data -> RAI pipeline
    (constructor, explanation / error analysis / counterfactuals / causal side by side, gather) -> wait
    -> scorecard -> verdict tagged on the model version -> dashboard page and report

On localml the pipeline's gathered insights hold everything the scorecard judges. On Azure the pipeline
builds Azure's own dashboard (in the studio); the scorecard's numbers are then computed by the flow from
the model and the test data, with the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from flows.parameters import FlowParameters, reference_check
from tasks.compute import ComputeSpec, cluster_name, ensure_compute
from tasks.data import DataSpec, register_data
from tasks.evaluation import metric_names
from tasks.jobs import InputSpec, submit_job, wait_for_job
from tasks.models import check_model_reference, resolve_model, tag_model_version
from tasks.rai import (
    GATHERED_FILE,
    INSIGHTS,
    Insight,
    RAIReviewSpec,
    ReviewData,
    ScorecardThresholds,
    apply_scorecard,
    check_review_inputs,
    download_review,
    judge_model,
    write_dashboard,
)
from tasks.reports import publish_review_report
from tasks.workspace import is_local


class RAIReviewParameters(FlowParameters):
    """Parameters of the ``rai_review`` flow; the defaults review the model the ``baseline`` flow registered."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    model: str = Field("azureml:diabetes-baseline@latest", description="The model to review: azureml:NAME:VERSION or azureml:NAME@latest")
    train_data: str = Field("examples/data/diabetes-rai/train", description="MLTable folder (or, on localml, azureml:NAME:VERSION) the model was trained on")
    test_data: str = Field("examples/data/diabetes-rai/test", description="MLTable folder (or, on localml, azureml:NAME:VERSION) to review it on")
    data_name: str = Field("diabetes-rai", description="Local folders are registered as DATA_NAME-train and DATA_NAME-test")
    target_column: str = Field("Diabetic", description="The column the model predicts")
    task_type: Literal["classification", "regression"] = Field("classification", description="What the model predicts: a class or a number")
    insights: list[Insight] = Field(list(INSIGHTS), min_length=1, description="Which insights to compute")
    treatment_features: list[str] = Field(["BMI"], description="Causal analysis: features whose effect on the outcome is estimated")
    cohort_features: dict[str, list[float] | None] = Field(
        {"Age": [0, 30, 50, 120]},
        description="Fairness: cohorts of the first feature, as band edges (or None for quartiles)",
    )
    categorical_features: list[str] = Field([], description="Feature columns that are categories")
    thresholds: ScorecardThresholds = Field(
        ScorecardThresholds(), description="The scorecard the model must pass (JSON on the command line); a threshold left empty is not checked"
    )
    max_test_rows: int = Field(1000, ge=10, description="Test rows reviewed (a sample when there are more)")
    total_counterfactuals: int = Field(5, ge=1, description="Counterfactuals per explained row")
    desired_range: list[float] | None = Field(None, description="Regression counterfactuals: the target range to reach")
    compute: str = Field("cpu-cluster", description="Compute cluster (created if missing); 'local' for none")
    max_instances: int = Field(2, ge=1, description="Nodes of a new cluster (localml: jobs at once)")
    experiment_name: str = Field("diabetes-rai-review", description="MLflow / Azure ML experiment")
    output_folder: str = Field("rai_reviews", description="Where the dashboard is downloaded, a folder per review")
    timeout_minutes: float = Field(30, gt=0, description="The review pipeline is canceled if it runs longer")
    refresh: bool = Field(False, description="Review again even if an identical review already ran")

    _model_is_a_reference = reference_check(check_model_reference, "model")

    @model_validator(mode="after")
    def _check(self) -> "RAIReviewParameters":
        known = metric_names(self.task_type)
        if self.thresholds.primary_metric_threshold is not None and self.thresholds.primary_metric not in known:
            raise ValueError(f"thresholds.primary_metric '{self.thresholds.primary_metric}' is not a {self.task_type} metric; use one of: {', '.join(known)}.")
        if self.thresholds.max_fairness_gap is not None and not self.cohort_features:
            raise ValueError("thresholds.max_fairness_gap needs cohort_features to compare, e.g. {\"Age\": [0, 30, 50, 120]}.")
        if self.thresholds.max_worst_cohort_error_rate is not None and "error_analysis" not in self.insights:
            raise ValueError("thresholds.max_worst_cohort_error_rate needs the error_analysis insight; add it to insights.")
        self.spec(InputSpec(type="mltable", path="azureml:train:1"), InputSpec(type="mltable", path="azureml:test:1"), "azureml:model:1", True)
        return self

    def spec(self, train: InputSpec, test: InputSpec, model: str, local: bool) -> RAIReviewSpec:
        """The review pipeline; localml's fairness cohorts are an extension Azure's constructor would refuse."""
        return RAIReviewSpec(
            experiment_name=self.experiment_name,
            model=model,
            train_data=train,
            test_data=test,
            target_column=self.target_column,
            task_type=self.task_type,
            title=f"Responsible AI review of {model.removeprefix('azureml:')}",
            insights=self.insights,
            categorical_features=self.categorical_features,
            treatment_features=self.treatment_features,
            cohort_features=self.cohort_features if local else {},
            max_test_rows=self.max_test_rows,
            total_counterfactuals=self.total_counterfactuals,
            desired_range=self.desired_range,
            compute=None if self.compute == "local" else self.compute,
        )


class RAIReviewResult(BaseModel):
    model: str
    job_name: str
    passed: bool
    reasons: list[str]
    checks: list[dict]
    insights: list[str] = Field(description="The sections the review computed")
    dashboard: str = Field(description="The dashboard page, to open in a browser")
    tags: dict[str, str] = Field(description="The model version's tags after the review")
    studio_url: str | None = None
    reused: bool


@flow(name="rai_review")
def rai_review(params: RAIReviewParameters = RAIReviewParameters.defaults()) -> RAIReviewResult:
    """Build the Responsible AI dashboard of a model and judge it with the scorecard."""
    params = params.validated()
    workspace = params.workspace
    model = resolve_model(workspace, params.model)
    data = ReviewData(train=params.train_data, test=params.test_data)
    check_review_inputs(
        workspace, model.reference, data, params.target_column, params.task_type,
        params.treatment_features if "causal" in params.insights else [], list(params.cohort_features), params.categorical_features,
    )
    train, test = (
        register_data(workspace, DataSpec(name=f"{params.data_name}-{split}", path=path, type="mltable")).reference
        for split, path in (("train", data.train), ("test", data.test))
    )
    if cluster_name(params.compute):
        ensure_compute(workspace, ComputeSpec(name=params.compute, max_instances=params.max_instances))
    local = is_local(workspace)
    spec = params.spec(InputSpec(type="mltable", path=train), InputSpec(type="mltable", path=test), model.reference, local)
    job = submit_job(workspace, spec, refresh=params.refresh)
    result = wait_for_job(workspace, job.name, timeout_seconds=params.timeout_minutes * 60)
    folder = download_review(workspace, job.name, params.output_folder)
    if local:
        insights = json.loads((folder / GATHERED_FILE).read_text())
    else:
        folder = Path(params.output_folder) / job.name / "scorecard"
        insights = judge_model(
            workspace, model.reference, data, params.target_column, params.task_type, params.cohort_features, params.max_test_rows
        )
    verdict = apply_scorecard(insights, params.thresholds)
    dashboard = write_dashboard(insights, verdict, spec.title, folder)
    tags = tag_model_version(workspace, model, verdict.tags(job.name))
    publish_review_report(verdict, model.reference, job.name, dashboard, result.studio_url)
    return RAIReviewResult(
        model=model.reference,
        job_name=job.name,
        passed=verdict.passed,
        reasons=verdict.reasons,
        checks=verdict.checks,
        insights=[k for k in insights if k not in ("overview", "scorecard")],
        dashboard=str(dashboard),
        tags=tags,
        studio_url=result.studio_url,
        reused=job.reused,
    )
