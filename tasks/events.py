"""Prefect events the flows emit, for automations (a deployment's trigger) to act on.

An event names the Azure ML asset it is about as its resource (``azureml.data.<name>``), with the exact
version in ``amlflows.data.reference``, so a trigger can pass it on as a flow parameter:
``"{{ event.resource['amlflows.data.reference'] }}"``.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from tasks.data import DataRef
from tasks.models import ModelRef

DRIFT_EVENT = "amlflows.data.drift-detected"


def data_resource(data: DataRef, workspace: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"azureml.data.{data.name}",
        "prefect.resource.name": data.name,
        "amlflows.data.reference": data.reference,
        "amlflows.data.version": data.version,
        "amlflows.workspace": workspace,
    }


def model_resource(model: ModelRef) -> dict[str, str]:
    return {
        "prefect.resource.id": f"azureml.model.{model.name}",
        "prefect.resource.role": "model",
        "prefect.resource.name": model.name,
        "amlflows.model.reference": model.reference,
    }


@task(name="emit_drift_event")
def emit_drift_event(workspace: str, data: DataRef, model: ModelRef, payload: dict[str, Any]) -> str | None:
    """Emit ``amlflows.data.drift-detected`` about ``data`` (related: the model it feeds); the event's id.

    Example:
        ```python
        emit_drift_event("local", current, model, drift_event_payload(report))
        ```
    """
    from prefect.events import emit_event

    event = emit_event(
        event=DRIFT_EVENT, resource=data_resource(data, workspace), related=[model_resource(model)], payload=payload
    )
    if event is None:
        get_run_logger().warning("Prefect events are turned off here: the drift event was not emitted")
        return None
    get_run_logger().info("Emitted %s about %s (event %s)", DRIFT_EVENT, data.reference, event.id)
    return str(event.id)
