"""What a person sees of a flow run: Prefect artifacts (markdown summaries, tables, links)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact


def _metrics_table(metrics: dict[str, float]) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()))
    return "| metric | value |\n|---|---|\n" + rows if rows else "_no metrics logged_"


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
        f"**MLflow run:** {f'[{job_name}]({studio_url})' if studio_url else job_name}\n\n"
        f"## Metrics\n\n{_metrics_table(metrics)}\n"
    )
    create_markdown_artifact(markdown=markdown, key="train-summary", description=f"Training job {job_name}")
    if studio_url:
        create_link_artifact(link=studio_url, link_text=f"MLflow run {job_name}", key="train-mlflow-run")
    return markdown
