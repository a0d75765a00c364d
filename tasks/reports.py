"""What a person sees of a flow run: Prefect artifacts (markdown summaries, tables, links)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from tasks.automl import AutoMLSummary, Trial
from tasks.batch import BatchScoreResult
from tasks.charts import class_balance_chart, drift_chart, rollout_chart
from tasks.drift import DriftReport
from tasks.evaluation import ModelComparison, RetrainResult
from tasks.rai import ReviewVerdict
from tasks.rollout import DeployResult, StepResult
from tasks.sweep import SweepResult

LEADERBOARD_ROWS = 25


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()))
    return "| metric | value |\n|---|---|\n" + rows if rows else "_no metrics logged_"


def _run_link(name: str, url: str | None) -> str:
    """A run's name as a markdown link, or bare where the workspace gave no URL."""
    return f"[{name}]({url})" if url else name


def _publish_link(url: str | None, text: str, key: str) -> None:
    """A link artifact, or none where the workspace gave no URL to link to."""
    if url:
        create_link_artifact(link=url, link_text=text, key=key)


def _publish_png(png: bytes, key: str, description: str) -> None:
    """An image artifact of a PNG, inlined as a data URL: no server holds the picture for Prefect's UI to fetch."""
    create_image_artifact(image_url=f"data:image/png;base64,{base64.b64encode(png).decode()}", key=key, description=description)


@task(name="publish_training_summary")
def publish_training_summary(
    job_name: str,
    status: str,
    metrics: dict[str, float],
    model_reference: str | None,
    data_reference: str,
    studio_url: str | None,
    reused: bool,
) -> str:
    """A markdown summary of a training run and a link to its MLflow run; returns the markdown.

    Example:
        ```python
        publish_training_summary(job.name, "Completed", {"AUC": 0.98}, "azureml:clf:1", "azureml:data:1", url, False)
        ```
    """
    origin = "re-attached to an existing job: nothing was retrained" if reused else "trained in this run"
    markdown = (
        f"# Training run `{job_name}`\n\n"
        f"**Status:** {status} ({origin})  \n"
        f"**Data:** `{data_reference}`  \n"
        f"**Model:** `{model_reference or 'not registered'}`  \n"
        f"**MLflow run:** {_run_link(job_name, studio_url)}\n\n"
        f"## Metrics\n\n{_metrics_table(metrics)}\n"
    )
    create_markdown_artifact(markdown=markdown, key="train-summary", description=f"Training job {job_name}")
    _publish_link(studio_url, f"MLflow run {job_name}", "train-mlflow-run")
    return markdown


@task(name="publish_baseline_report")
def publish_baseline_report(
    job_name: str,
    summary: AutoMLSummary,
    leaderboard: list[Trial],
    model_reference: str,
    data_reference: str,
    studio_url: str | None,
    reused: bool,
) -> str:
    """Artifacts of an AutoML baseline: a markdown summary, the leaderboard and guardrail tables,
    and the feature-importance chart; returns the summary markdown.

    Example:
        ```python
        publish_baseline_report(job.name, summary, board, model.reference, data.reference, result.studio_url, False)
        ```
    """
    metric = summary.primary_metric or "score"
    markdown = _baseline_markdown(job_name, summary, len(leaderboard), model_reference, data_reference, studio_url, reused)
    create_markdown_artifact(markdown=markdown, key="baseline-summary", description=f"AutoML job {job_name}")
    create_table_artifact(
        table=[
            {"rank": rank, "run": t.run_id, "algorithm": t.algorithm, metric: round(t.score, 4) if t.score is not None else None,
             "seconds": round(t.duration_seconds, 1) if t.duration_seconds else None}
            for rank, t in enumerate(leaderboard[:LEADERBOARD_ROWS], start=1)
        ],
        key="baseline-leaderboard",
        description=f"Top {LEADERBOARD_ROWS} trials of {job_name} by {metric}",
    )
    if summary.guardrails:
        create_table_artifact(table=summary.guardrails, key="baseline-guardrails", description="Data guardrails")
    if summary.importance_png:
        _publish_png(summary.importance_png, "baseline-feature-importance", f"Feature importance of the best model of {job_name}")
    _publish_link(studio_url, f"MLflow run {job_name}", "baseline-mlflow-run")
    return markdown


def _baseline_markdown(job_name: str, summary: AutoMLSummary, trials: int, model_reference: str, data_reference: str,
                       studio_url: str | None, reused: bool) -> str:
    """The best model's validation and held-out metrics kept apart: a test score is the one to trust."""
    metric = summary.primary_metric or "score"
    origin = "re-attached to an existing job: nothing was retrained" if reused else "trained in this run"
    test_metrics = {k: v for k, v in summary.metrics.items() if k.startswith("test_")}
    importance = "\n".join(f"| {name} | {value:.4f} |" for name, value in summary.feature_importance.items())
    validation_metrics = {k: v for k, v in summary.metrics.items() if k not in test_metrics}
    lines = [f"# AutoML baseline `{job_name}`", "", f"**Status:** Completed ({origin})  "]
    if summary.score is not None:
        lines.append(f"**Best model:** {summary.algorithm} (run `{summary.best_run_id}`), {metric} = {summary.score:.4f}  ")
    lines += [
        f"**Trials:** {trials}  ",
        f"**Registered:** `{model_reference}` from data `{data_reference}`  ",
        f"**MLflow run:** {_run_link(job_name, studio_url)}",
        "",
        "## Validation metrics of the best model",
        "",
        _metrics_table(validation_metrics),
    ]
    markdown = "\n".join(lines) + "\n"
    if test_metrics:
        markdown += f"\n## Held-out test data\n\n{_metrics_table(test_metrics)}\n"
    if importance:
        markdown += f"\n## Feature importance (mean |SHAP|)\n\n| feature | importance |\n|---|---|\n{importance}\n"
    return markdown


@task(name="publish_sweep_report")
def publish_sweep_report(result: SweepResult, model_reference: str | None, studio_url: str | None, reused: bool) -> str:
    """Artifacts of a sweep: a summary with the best configuration, the trials table, and a picture
    (metric per trial, parallel coordinates); returns the summary markdown.

    Example:
        ```python
        publish_sweep_report(sweep_trials("local", job.name), model.reference, job_result.studio_url, False)
        ```
    """
    from tasks.charts import sweep_chart

    origin = "re-attached to an existing sweep: nothing was retrained" if reused else "tuned in this run"
    counts = Counter(t.status for t in result.trials)
    best = "\n".join(f"| {name} | {value} |" for name, value in sorted(result.best_parameters.items()))
    score = f"{result.best_score:.4f}" if result.best_score is not None else "none"
    markdown = (
        f"# Sweep `{result.job_name}`\n\n"
        f"**Trials:** {len(result.trials)} ({', '.join(f'{n} {s.lower()}' for s, n in sorted(counts.items()))}; "
        f"{result.compute_seconds:.0f} s of trial time), {origin}  \n"
        f"**Best trial:** `{result.best_trial}` with {result.primary_metric} = {score} ({result.goal})  \n"
        f"**Registered:** `{model_reference or 'not registered'}`  \n"
        f"**MLflow run:** {_run_link(result.job_name, studio_url)}\n\n"
        f"## Best configuration\n\n| hyperparameter | value |\n|---|---|\n{best}\n"
    )
    create_markdown_artifact(markdown=markdown, key="tune-summary", description=f"Sweep job {result.job_name}")
    create_table_artifact(
        table=[
            {"trial": t.name, "status": t.status, result.primary_metric: round(t.score, 4) if t.score is not None else None,
             "intervals": t.intervals, "seconds": round(t.duration_seconds, 1) if t.duration_seconds else None,
             **t.parameters}
            for t in result.trials
        ],
        key="tune-trials",
        description=f"Trials of {result.job_name}",
    )
    _publish_png(sweep_chart(result), "tune-trials-chart",
                 f"{result.primary_metric} per trial and the hyperparameters tried in {result.job_name}")
    _publish_link(studio_url, f"MLflow run {result.job_name}", "tune-mlflow-run")
    return markdown


@task(name="publish_refine_report")
def publish_refine_report(
    comparison: ModelComparison,
    automl_job: str,
    refined_job: str,
    changes: dict[str, str],
    decision: str,
    model_reference: str | None,
    links: dict[str, str | None],
) -> str:
    """Artifacts of a refinement: the decision, the metrics of both models side by side on the same
    held-out rows, their picture (ROC curves), and links to both MLflow runs; returns the markdown.

    Example:
        ```python
        publish_refine_report(comparison, automl_job, job.name, {"learning_rate": "0.05"}, reason, None, links)
        ```
    """
    markdown = _refine_markdown(comparison, automl_job, refined_job, changes, decision, model_reference, links)
    create_markdown_artifact(markdown=markdown, key="refine-summary", description=f"Refined {automl_job} as {refined_job}")
    create_table_artifact(
        table=[{"metric": name, "AutoML best": round(value, 4), "refined": round(comparison.candidate[name], 4)}
               for name, value in sorted(comparison.baseline.items()) if name in comparison.candidate],
        key="refine-comparison",
        description=f"Both models on the same {comparison.rows} held-out rows",
    )
    _publish_png(comparison.chart_png, "refine-comparison-chart", "Both models on the held-out rows")
    for label, url in links.items():
        _publish_link(url, f"MLflow run: {label}", f"refine-{label.split()[0].lower()}-run")
    return markdown


def _refine_markdown(comparison: ModelComparison, automl_job: str, refined_job: str, changes: dict[str, str], decision: str,
                     model_reference: str | None, links: dict[str, str | None]) -> str:
    """The decision first, then both models' metrics side by side with the primary metric in bold."""
    metric = comparison.primary_metric
    changed = ", ".join(f"`{k}` = {v}" for k, v in changes.items()) or "none (the generated script as it is)"
    runs = " · ".join(_run_link(label, url) for label, url in links.items())
    markdown = (
        f"# Refined model `{refined_job}` against AutoML `{automl_job}`\n\n"
        f"**Decision:** {decision}  \n"
        f"**Registered:** `{model_reference or 'nothing'}`  \n"
        f"**Changes:** {changed}  \n"
        f"**Held-out rows:** {comparison.rows}  \n"
        f"**MLflow runs:** {runs}\n\n"
        f"## Metrics on the held-out rows ({metric} decides, {'higher' if comparison.maximize else 'lower'} is better)\n\n"
        "| metric | AutoML best | refined | difference |\n|---|---|---|---|\n"
        + "\n".join(
            f"| {'**' + name + '**' if name == metric else name} | {value:.4f} | {comparison.candidate[name]:.4f} | "
            f"{comparison.candidate[name] - value:+.4f} |"
            for name, value in sorted(comparison.baseline.items()) if name in comparison.candidate
        )
        + "\n"
    )
    return markdown


@task(name="publish_review_report")
def publish_review_report(verdict: ReviewVerdict, model_reference: str, job_name: str, dashboard: Path, studio_url: str | None) -> str:
    """Artifacts of a Responsible AI review: the verdict with each check, the reasons it failed, and links
    to the dashboard page and the review pipeline; returns the markdown.

    Example:
        ```python
        publish_review_report(verdict, "azureml:diabetes-baseline:1", job.name, folder / "dashboard.html", url)
        ```
    """
    dashboard_uri = dashboard.resolve().as_uri()
    markdown = (
        f"# Responsible AI review of `{model_reference}`: {'passed' if verdict.passed else 'FAILED'}\n\n"
        + ("".join(f"- {reason}\n" for reason in verdict.reasons) + "\n" if verdict.reasons else "")
        + f"**Dashboard:** [{dashboard.name}]({dashboard_uri}) (open it in a browser)  \n"
        f"**Review pipeline:** {_run_link(job_name, studio_url)}  \n"
        f"**Verdict stored on:** `{model_reference}` as `rai_*` tags\n\n"
        "| check | value | threshold | result |\n|---|---|---|---|\n"
        + "\n".join(f"| {c['name']} | {c['value']:.4f} | {c['threshold']} | {'pass' if c['passed'] else '**FAIL**'} |" for c in verdict.checks)
        + ("\n" if verdict.checks else "_no thresholds were set_\n")
    )
    create_markdown_artifact(markdown=markdown, key="rai-review", description=f"Responsible AI review of {model_reference}")
    _publish_link(dashboard_uri, f"Responsible AI dashboard of {model_reference}", "rai-dashboard")
    return markdown


@task(name="publish_drift_report")
def publish_drift_report(report: DriftReport, share_threshold: float, event_id: str | None) -> str:
    """Artifacts of a drift check: the verdict, each feature's test, p-value and PSI, and a picture of the PSIs.

    Example:
        ```python
        publish_drift_report(report, 0.1, event_id)
        ```
    """
    verdict = (
        f"**drift**: {len(report.drifted)} of {len(report.features)} features drifted ({', '.join(report.drifted)}); "
        f"the event was emitted ({event_id})" if event_id else
        f"no drift to act on: {len(report.drifted)} of {len(report.features)} features drifted"
    )
    markdown = (
        f"# Drift of `{report.current}` against `{report.reference}`\n\n"
        f"{verdict}  \n"
        f"**Drift share:** {report.drift_share:.3f} (the event is emitted from {share_threshold:g})  \n"
        f"**Rows:** {report.reference_rows} reference, {report.current_rows} current  \n"
        f"**A feature drifts when** its test's p-value is below {report.p_value:g} and its PSI is at least {report.psi_threshold:g}\n\n"
        "| feature | test | statistic | p-value | PSI | mean (reference -> current) | drifted |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {f.feature} | {f.test} | {f.statistic:.4f} | {f.p_value:.3g} | {f.psi:.4f} | "
            + (f"{f.reference_mean:.4g} -> {f.current_mean:.4g}" if f.reference_mean is not None else "")
            + f" | {'**yes**' if f.drifted else 'no'} |"
            for f in report.features
        )
        + "\n"
    )
    create_markdown_artifact(markdown=markdown, key="drift-report", description=f"Drift of {report.current}")
    create_table_artifact(
        table=[f.model_dump() for f in report.features], key="drift-features", description="Each feature's test and PSI"
    )
    chart = drift_chart([(f.feature, f.psi, f.drifted) for f in report.features], report.psi_threshold)
    _publish_png(chart, "drift-chart", "PSI by feature")
    return markdown


@task(name="publish_retrain_report")
def publish_retrain_report(result: RetrainResult) -> str:
    """The retraining's decision as a markdown artifact: the candidate, the champion before and after, the numbers,
    and the promotion event's id when it promoted.

    Example:
        ```python
        publish_retrain_report(result)
        ```
    """
    metric = result.metric
    markdown = (
        f"# Retraining on `{result.data}` ({result.reason})\n\n"
        f"**Decision:** {result.decision}  \n"
        f"**Candidate:** `{result.candidate}`, review {'passed' if result.review_passed else 'FAILED'}, {metric} {result.candidate_score:.4f}  \n"
        f"**Champion before:** `{result.champion_before or 'none'}`"
        + (f", {metric} {result.champion_score:.4f}" if result.champion_score is not None else "")
        + f"  \n**Champion now:** `{result.champion_after or 'none'}` (tagged `champion=true`)\n"
        + (f"\n**Started by the event:** `{json.dumps(result.event, default=str)[:800]}`\n" if result.event else "")
        + (f"\n**Promotion event:** `{result.event_id}` (`amlflows.model.promoted`, for the deploy trigger)\n" if result.event_id
           else "\n**Promotion event:** not emitted (Prefect events are turned off here)\n" if result.promoted else "")
    )
    create_markdown_artifact(markdown=markdown, key="retrain-decision", description=f"Retraining on {result.data}")
    return markdown


@task(name="publish_rollout_report")
def publish_rollout_report(result: DeployResult) -> str:
    """A deployment's artifacts: the outcome, the rollout timeline (each step's traffic, requests, failure rate and
    p95 for both deployments, verdict), a chart of latency and failures across the steps, the endpoint's link.

    Example:
        ```python
        publish_rollout_report(result)
        ```
    """
    outcome = {
        "deployed": f"`{result.model}` deployed as `{result.deployment}`, taking all traffic",
        "rolled out": f"`{result.model}` rolled out to `{result.deployment}`, taking all traffic; `{result.previous}` "
                      f"{'kept at 0%' if result.previous_kept else 'deleted'}",
        "unchanged": f"nothing to do: `{result.deployment}` already serves `{result.model}`",
        "rolled back": f"`{result.model}` **rolled back**: the endpoint serves as before"
                       + (f" (`{result.previous}`)" if result.previous else ""),
    }[result.outcome]
    markdown = (
        f"# Deploying to `{result.endpoint}`\n\n**Outcome:** {outcome}  \n"
        + (f"**Found:** {result.interrupted_rollout}  \n" if result.interrupted_rollout else "")
        + (f"\n| step | traffic | mirror | seconds | new: requests | new: failure rate | new: p95 ms | current: requests "
           "| current: failure rate | current: p95 ms | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
           + "\n".join(_timeline_row(step) for step in result.steps) + "\n" if result.steps else "")
    )
    create_markdown_artifact(markdown=markdown, key="rollout-timeline", description=f"Deploying {result.model} to {result.endpoint}")
    watched = [step for step in result.steps if step.new is not None]
    if watched:
        chart = rollout_chart([(step.step, {f.deployment: (f.latency_ms.get("p95"), f.failure_rate)
                                            for f in (step.new, step.current) if f is not None}) for step in watched])
        _publish_png(chart, "rollout-chart", "p95 latency and failure rate by step")
    _publish_link(result.scoring_uri, f"{result.endpoint} scoring URI", "endpoint")
    return markdown


def _timeline_row(step: StepResult) -> str:
    def figures(f) -> str:
        if f is None:
            return " | | "
        p95 = f.latency_ms.get("p95")
        return f"{f.requests} | {f.failure_rate:.2%} | {'' if p95 is None else f'{p95:.1f}'}"

    verdict = step.verdict if step.passed else f"**{step.verdict}**"
    return (f"| {step.step} | {_shares(step.traffic)} | {_shares(step.mirror)} | {step.seconds:g} | {figures(step.new)} | "
            f"{figures(step.current)} | {verdict}: {step.reason} |")


def _shares(shares: dict[str, int]) -> str:
    return ", ".join(f"{name} {share}%" for name, share in shares.items())


@task(name="publish_batch_report")
def publish_batch_report(result: BatchScoreResult, first_rows: list[dict]) -> str:
    """Artifacts of a batch scoring run: a summary (rows scored, failed mini-batches, the deployment, the registered
    predictions), the predicted class balance as a chart and a table of the first rows; returns the markdown.

    Example:
        ```python
        publish_batch_report(result, predictions.first_rows)
        ```
    """
    failed = "not reported by the job" if result.failed_mini_batches is None else str(result.failed_mini_batches)
    deployment = {"created": "created in this run", "updated": "updated in this run (a new model or settings)",
                  "unchanged": "re-used unchanged"}[result.deployment_outcome]
    total = sum(result.class_balance.values()) or 1
    markdown = (
        f"# Batch scoring `{result.job_name}`: {result.status}\n\n"
        f"**Rows scored:** {result.rows} from {result.files} file(s) of `{result.data}`  \n"
        f"**Failed mini-batches:** {'**' + failed + '**' if result.failed_mini_batches else failed}  \n"
        f"**Model:** `{result.model}` on `{result.endpoint}/{result.deployment}` ({deployment})  \n"
        f"**Predictions:** `{result.predictions}` (downloaded to `{result.predictions_path}`)  \n"
        f"**Job:** {_run_link(result.job_name, result.studio_url)}"
        + (f" ({result.duration_seconds:.0f} s)" if result.duration_seconds is not None else "") + "\n\n"
        "## Predicted classes\n\n| class | rows | share |\n|---|---|---|\n"
        + "\n".join(f"| {name} | {count} | {count / total:.1%} |" for name, count in result.class_balance.items())
        + "\n"
    )
    create_markdown_artifact(markdown=markdown, key="batch-summary", description=f"Batch scoring job {result.job_name}")
    if result.class_balance:
        _publish_png(class_balance_chart(result.class_balance), "batch-class-balance", f"Predicted classes of {result.job_name}")
    if first_rows:
        create_table_artifact(table=first_rows, key="batch-first-rows", description=f"The first {len(first_rows)} predictions of {result.job_name}")
    _publish_link(result.studio_url, f"Batch job {result.job_name}", "batch-job")
    return markdown
