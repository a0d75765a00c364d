"""Compute targets: make sure a cluster exists before jobs name it."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client


#: Compute names that mean "no cluster": the job runs on the workspace's default.
LOCAL_COMPUTE = ("local", "serverless")


def cluster_name(compute: str) -> str | None:
    """The cluster a job should name, or None when ``compute`` means no cluster."""
    return None if compute in LOCAL_COMPUTE else compute


class ComputeSpec(BaseModel):
    name: str = Field(description="Compute cluster name")
    size: str = Field(default="STANDARD_DS11_V2", description="VM size (Azure); ignored by localml")
    min_instances: int = Field(default=0, ge=0)
    max_instances: int = Field(default=2, ge=1, description="Nodes; on localml, how many jobs run at once")
    idle_time_before_scale_down: int = Field(default=120, ge=0, description="Seconds (Azure)")


    def to_compute(self) -> Any:
        """The ``AmlCompute`` entity this spec describes."""
        from azure.ai.ml.entities import AmlCompute

        return AmlCompute(
            name=self.name,
            size=self.size,
            min_instances=self.min_instances,
            max_instances=self.max_instances,
            idle_time_before_scale_down=self.idle_time_before_scale_down,
        )


class ComputeRef(BaseModel):
    name: str
    max_instances: int
    created: bool


@task(name="ensure_compute", **TRANSIENT_RETRIES)
def ensure_compute(workspace: str, spec: ComputeSpec) -> ComputeRef:
    """Create the compute cluster unless one of that name exists (an existing one is left as it is).

    Example:
        ```python
        cluster = ensure_compute("local", ComputeSpec(name="cpu-cluster", max_instances=2))
        ```
    """
    logger = get_run_logger()
    client = get_client(workspace)
    try:
        existing = client.compute.get(spec.name)
        logger.info("Compute %s exists (max_instances=%s)", existing.name, existing.max_instances)
        return ComputeRef(name=existing.name, max_instances=existing.max_instances, created=False)
    except ResourceNotFoundError:
        pass
    created = client.begin_create_or_update(spec.to_compute()).result()
    logger.info("Created compute %s (max_instances=%s)", created.name, created.max_instances)
    return ComputeRef(name=created.name, max_instances=created.max_instances, created=True)
