"""Responsible AI review: Azure's RAI pipeline as plain data, the checks before it runs, and the scorecard after.

The pipeline is written with the component URIs of Azure's ``azureml`` registry
(``azureml://registries/azureml/components/rai_tabular_*/versions/<v>``), so the same spec runs on Azure
and on localml, and needs no client to build or validate. Submit and wait with ``tasks.jobs.submit_job``
/ ``wait_for_job``: a review is a pipeline job like any other.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field, model_validator

from amlkit.rai.scorecard import Thresholds, judged_insights, scorecard
from amlkit.references import parse_asset_reference
from tasks.data import read_table
from tasks.jobs import InputSpec, JobSpec
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client

Insight = Literal["explanation", "error_analysis", "counterfactual", "causal"]
INSIGHTS: tuple[Insight, ...] = ("explanation", "error_analysis", "counterfactual", "causal")
#: Azure's built-in component of each insight, and the name of its output.
INSIGHT_COMPONENTS = {
    "explanation": ("rai_tabular_explanation", "explanation"),
    "error_analysis": ("rai_tabular_erroranalysis", "error_analysis"),
    "counterfactual": ("rai_tabular_counterfactual", "counterfactual"),
    "causal": ("rai_tabular_causal", "causal"),
}
DASHBOARD_OUTPUT = "dashboard"
GATHERED_FILE = "rai_insights.json"
DASHBOARD_FILE = "dashboard.html"


class ScorecardThresholds(BaseModel):
    """The gate a reviewed model must pass; a threshold left empty (null) is not checked.

    The defaults are the diabetes sample's gate: AUC at least 0.85; in no cohort of 5% of the rows or more is the
    model wrong more often than right; accuracy differs by at most 0.15 between the cohorts of the fairness feature.
    """

    model_config = ConfigDict(extra="forbid")

    primary_metric: str = Field("AUC_weighted", description="Azure's name of the metric the model is judged on")
    primary_metric_threshold: float | None = Field(
        0.85, description="The primary metric must be at least this (at most, for an error or a loss); empty: not checked"
    )
    max_worst_cohort_error_rate: float | None = Field(
        0.5, ge=0, le=1, description="Error rate allowed in the worst cohort the error-analysis tree finds; empty: not checked"
    )
    max_fairness_gap: float | None = Field(
        0.15, ge=0, description="Largest difference of the fairness metric between cohorts of the first cohort feature; empty: not checked"
    )
    fairness_metric: str = Field("accuracy", description="The metric compared between cohorts")
    min_cohort_share: float = Field(0.05, gt=0, lt=1, description="Cohorts smaller than this share of the test rows are not judged (their rates are noise)")

    def to_thresholds(self) -> Thresholds:
        return Thresholds(**self.model_dump())


class RAIReviewSpec(JobSpec):
    """Azure's Responsible AI pipeline (constructor, insights side by side, gather) for one model.

    Example:
        ```python
        spec = RAIReviewSpec(
            model="azureml:diabetes-baseline:1",
            train_data=InputSpec(type="mltable", path="azureml:diabetes-rai-train:1"),
            test_data=InputSpec(type="mltable", path="azureml:diabetes-rai-test:1"),
            target_column="Diabetic", task_type="classification", treatment_features=["BMI"],
        )
        job = submit_job("local", spec)
        ```
    """

    experiment_name: str = "rai-review"
    model: str = Field(description="azureml:NAME:VERSION of a registered MLflow model")
    train_data: InputSpec
    test_data: InputSpec
    target_column: str = Field(min_length=1)
    task_type: Literal["classification", "regression"] = "classification"
    title: str = "Responsible AI review"
    insights: list[Insight] = Field(default_factory=lambda: list(INSIGHTS), min_length=1)
    categorical_features: list[str] = Field(default_factory=list)
    treatment_features: list[str] = Field(default_factory=list, description="Causal analysis: the features whose effect is estimated")
    cohort_features: dict[str, list[float] | None] = Field(
        default_factory=dict,
        description="localml only: fairness cohorts of the first feature ({'Age': [0, 30, 50, 120]}: band edges; None: quartiles)",
    )
    max_test_rows: int = Field(5000, ge=10)
    total_counterfactuals: int = Field(10, ge=1, description="Counterfactuals per explained row")
    desired_range: list[float] | None = Field(None, min_length=2, max_length=2, description="Regression counterfactuals: the target range to reach")
    error_tree_depth: int = Field(3, ge=1, le=10)
    compute: str | None = None
    registry: str = "azureml"
    component_version: str = "0.22.0"
    display_name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "RAIReviewSpec":
        reference = parse_asset_reference(self.model)
        if reference is None or reference.version is None:
            raise ValueError(f"model '{self.model}' must be azureml:<name>:<version> (resolve @latest to its version first).")
        if "causal" in self.insights and not self.treatment_features:
            raise ValueError("The causal analysis needs treatment_features (e.g. ['BMI']); or leave 'causal' out of insights.")
        if "counterfactual" in self.insights and self.task_type == "regression" and self.desired_range is None:
            raise ValueError("Regression counterfactuals need desired_range, the target values to reach (e.g. [100, 150]).")
        if len(set(self.insights)) != len(self.insights):
            raise ValueError(f"insights lists one twice: {self.insights}.")
        return self

    def data_inputs(self) -> dict[str, InputSpec]:
        return {"train_data": self.train_data, "test_data": self.test_data}

    def with_data_inputs(self, inputs: dict[str, InputSpec]) -> "RAIReviewSpec":
        return self.model_copy(update={k: v for k, v in inputs.items() if k in ("train_data", "test_data")})

    def pipeline_yaml(self) -> dict[str, Any]:
        """The pipeline job as Azure's YAML (``az ml job create --file``) would write it."""
        pipeline = {
            "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json",
            "type": "pipeline",
            "experiment_name": self.experiment_name,
            "inputs": {
                "target_column_name": self.target_column,
                "train_data": self.train_data.model_dump(),
                "test_data": self.test_data.model_dump(),
            },
            "outputs": {DASHBOARD_OUTPUT: {"type": "uri_folder"}, "ux_json": {"type": "uri_folder"}},
            "jobs": {"create": self._constructor_node(), **self._insight_nodes()},
        }
        if self.compute:
            pipeline["compute"] = self.compute
        if self.display_name:
            pipeline["display_name"] = self.display_name
        return pipeline

    def _constructor_node(self) -> dict[str, Any]:
        """The step that loads the model and the data into the dashboard every insight adds to."""
        reference = parse_asset_reference(self.model)
        metadata = {"categorical_features": self.categorical_features} if self.categorical_features else {}
        if self.cohort_features:
            metadata["cohort_features"] = self.cohort_features
        return self._node("rai_tabular_insight_constructor", {
            "title": self.title,
            "task_type": self.task_type,
            "model_info": f"{reference.name}:{reference.version}",
            "model_input": {"type": "mlflow_model", "path": self.model},
            "train_dataset": "${{parent.inputs.train_data}}",
            "test_dataset": "${{parent.inputs.test_data}}",
            "target_column_name": "${{parent.inputs.target_column_name}}",
            "maximum_rows_for_test_dataset": self.max_test_rows,
            "categorical_column_names": json.dumps(self.categorical_features),
            "feature_metadata": json.dumps(metadata),
        })

    def _insight_nodes(self) -> dict[str, Any]:
        """A step per insight asked for, each on the constructor's dashboard, and the step gathering them into one."""
        dashboard = "${{parent.jobs.create.outputs.rai_insights_dashboard}}"
        settings = {
            "explanation": {"comment": self.title},
            "error_analysis": {"max_depth": self.error_tree_depth},
            "counterfactual": {"total_CFs": self.total_counterfactuals, **(
                {"desired_range": json.dumps(self.desired_range)} if self.task_type == "regression" else {"desired_class": "opposite"}
            )},
            "causal": {"treatment_features": json.dumps(self.treatment_features)},
        }
        jobs: dict[str, Any] = {}
        gathered: dict[str, str] = {"constructor": dashboard}
        for number, insight in enumerate(self.insights, start=1):
            component, output = INSIGHT_COMPONENTS[insight]
            jobs[insight] = self._node(component, {"rai_insights_dashboard": dashboard, **settings[insight]})
            gathered[f"insight_{number}"] = f"${{{{parent.jobs.{insight}.outputs.{output}}}}}"
        jobs["gather"] = self._node("rai_tabular_insight_gather", gathered)
        jobs["gather"]["outputs"] = {DASHBOARD_OUTPUT: "${{parent.outputs.dashboard}}", "ux_json": "${{parent.outputs.ux_json}}"}
        return jobs

    def _node(self, component: str, inputs: dict[str, Any]) -> dict[str, Any]:
        uri = f"azureml://registries/{self.registry}/components/{component}/versions/{self.component_version}"
        return {"type": "command", "component": uri, "inputs": inputs}

    def to_job(self, name: str | None = None) -> Any:
        """The ``azure.ai.ml`` pipeline job entity, loaded from :meth:`pipeline_yaml` as ``load_job`` loads a file."""
        from azure.ai.ml import load_job

        job = load_job(source=io.StringIO(yaml.safe_dump(self.pipeline_yaml(), sort_keys=False)))
        if name:
            job.name = name
        return job


class ReviewVerdict(BaseModel):
    """The scorecard's verdict: passed, each check with its number and threshold, and why it failed."""

    passed: bool
    checks: list[dict[str, Any]]
    reasons: list[str]
    thresholds: dict[str, Any]

    def tags(self, job_name: str) -> dict[str, str]:
        """What is stored on the model version: the verdict, the reasons and each measured number."""
        tags = {"rai_review": "passed" if self.passed else "failed", "rai_review_job": job_name}
        tags.update({f"rai_{c['key']}": f"{c['value']:.4f}" for c in self.checks})
        if self.reasons:
            tags["rai_review_reasons"] = "; ".join(self.reasons)[:1000]
        return tags


class ReviewData(BaseModel):
    """A review's train and test data, each a local MLTable folder or (localml) a data asset reference."""

    train: str
    test: str


@task(name="check_review_inputs", **TRANSIENT_RETRIES)
def check_review_inputs(
    workspace: str,
    model: str,
    data: ReviewData,
    target_column: str,
    task_type: str,
    treatment_features: list[str],
    cohort_features: list[str],
    categorical_features: list[str],
) -> dict[str, Any]:
    """Check a review's inputs here, in seconds, before the pipeline's long computations start.

    The target must be in both data sets, the model's signature must match their columns, a classifier
    must give probabilities, and treatment, cohort and categorical features must be columns. Returns
    ``{"features": [...], "train_rows": n, "test_rows": n}``; raises ValueError saying what to fix.

    Example:
        ```python
        check_review_inputs("local", "azureml:diabetes-baseline:1",
                            ReviewData(train="examples/data/diabetes-rai/train", test="examples/data/diabetes-rai/test"),
                            "Diabetic", "classification", ["BMI"], ["Age"], [])
        ```
    """
    from amlkit.errors import SpecError

    with tempfile.TemporaryDirectory(prefix="rai-check-") as folder:
        try:
            review = _load_review(workspace, model, data, target_column, task_type, categorical_features, Path(folder))
            review.check_features(treatment_features, "Treatment feature")
            review.check_features(cohort_features, "Cohort feature")
        except SpecError as error:
            raise ValueError(f"Review of {model}: {error}") from None
    return {"features": review.features, "train_rows": len(review.train), "test_rows": len(review.test)}


@task(name="download_review", **TRANSIENT_RETRIES)
def download_review(workspace: str, job_name: str, destination: str | Path) -> Path:
    """Download a review pipeline's dashboard output to ``<destination>/<job_name>``; the folder.

    Example:
        ```python
        folder = download_review("local", job.name, "rai_reviews")   # rai_reviews/<job>/dashboard.html, ...
        ```
    """
    target = Path(destination) / job_name
    get_client(workspace).jobs.download(job_name, download_path=str(target), output_name=DASHBOARD_OUTPUT)
    return target / "named-outputs" / DASHBOARD_OUTPUT


@task(name="judge_model")
def judge_model(
    workspace: str,
    model: str,
    data: ReviewData,
    target_column: str,
    task_type: str,
    cohort_features: dict[str, list[float] | None],
    max_test_rows: int = 5000,
    error_tree_depth: int = 3,
) -> dict[str, Any]:
    """What the scorecard judges (metrics, worst error cohort, fairness), computed here from the model and the
    test data: for a review whose dashboard holds Azure's own format (``RAIInsights``), not localml's
    ``rai_insights.json``.

    Example:
        ```python
        insights = judge_model("azure", "azureml:diabetes-baseline:3", data, "Diabetic", "classification", {"Age": [0, 30, 50, 120]})
        ```
    """
    with tempfile.TemporaryDirectory(prefix="rai-judge-") as folder:
        review = _load_review(workspace, model, data, target_column, task_type, [], Path(folder), max_test_rows)
        return judged_insights(review, cohort_features, max_depth=error_tree_depth)


@task(name="apply_scorecard")
def apply_scorecard(insights: dict[str, Any], thresholds: ScorecardThresholds) -> ReviewVerdict:
    """The verdict of ``thresholds`` on a review's insights; thresholds left as None are not checked.

    Example:
        ```python
        verdict = apply_scorecard(insights, ScorecardThresholds(max_worst_cohort_error_rate=0.3, max_fairness_gap=None))
        verdict.passed, verdict.reasons
        ```
    """
    verdict = ReviewVerdict(**scorecard(insights, thresholds.to_thresholds()))
    logger = get_run_logger()
    for check in verdict.checks:
        logger.info("%s %s: %.4f (threshold %s)", "pass" if check["passed"] else "FAIL", check["name"], check["value"], check["threshold"])
    return verdict


def review_score(checks: list[dict[str, Any]], metric: str) -> float:
    """The value of ``metric`` a verdict checked."""
    found = [c["value"] for c in checks if c["key"] == metric]
    if not found:
        raise ValueError(f"The review did not check {metric}: set thresholds.primary_metric_threshold so models can be compared.")
    return found[0]


def write_dashboard(insights: dict[str, Any], verdict: ReviewVerdict, title: str, folder: Path) -> Path:
    """The review's dashboard page with the verdict on it, and the insights with the verdict beside it."""
    from amlkit.rai import dashboard

    judged = {**insights, "scorecard": verdict.model_dump()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / GATHERED_FILE).write_text(json.dumps(judged, indent=2, default=str))
    return dashboard.write(judged, title, folder / DASHBOARD_FILE)


def _load_review(
    workspace: str, model: str, data: ReviewData, target: str, task_type: str, categorical: list[str], folder: Path, max_test_rows: int = 5000
) -> Any:
    from amlkit.rai.review import build_review

    reference = parse_asset_reference(model)
    client = get_client(workspace)
    client.models.download(reference.name, reference.version, download_path=str(folder))
    model_folder = next(p.parent for p in (folder / reference.name).rglob("MLmodel"))
    return build_review(model_folder, read_table(client, data.train), read_table(client, data.test), target, task_type, categorical, max_test_rows)
