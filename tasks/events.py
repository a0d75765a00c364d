"""Prefect events the flows emit, for automations (a deployment's trigger) to act on.

An event names the Azure ML asset it is about as its resource (``azureml.data.<name>``, ``azureml.model.<name>``),
with the exact version in ``amlflows.data.reference`` / ``amlflows.model.reference`` and the workspace in
``amlflows.workspace``, so a trigger can pass them on as flow parameters:
``"{{ event.resource['amlflows.data.reference'] }}"``.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from tasks.data import DataRef
from tasks.models import ModelRef

DRIFT_EVENT = "amlflows.data.drift-detected"
PROMOTION_EVENT = "amlflows.model.promoted"


def data_resource(data: DataRef, workspace: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"azureml.data.{data.name}",
        "prefect.resource.name": data.name,
        "amlflows.data.reference": data.reference,
        "amlflows.data.version": data.version,
        "amlflows.workspace": workspace,
    }


def model_resource(model: ModelRef, workspace: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"azureml.model.{model.name}",
        "prefect.resource.name": model.name,
        "amlflows.model.reference": model.reference,
        "amlflows.model.version": model.version,
        "amlflows.workspace": workspace,
    }


def related(resource: dict[str, str], role: str) -> dict[str, str]:
    """``resource`` as a related resource of an event, in ``role``."""
    return {**resource, "prefect.resource.role": role}


@task(name="emit_drift_event")
def emit_drift_event(workspace: str, data: DataRef, model: ModelRef, payload: dict[str, Any]) -> str | None:
    """Emit ``amlflows.data.drift-detected`` about ``data`` (related: the model it feeds); the event's id.

    Example:
        ```python
        emit_drift_event("local", current, model, drift_event_payload(report))
        ```
    """
    links = [related(model_resource(model, workspace), "model")]
    return _emit(DRIFT_EVENT, data.reference, data_resource(data, workspace), links, payload)


@task(name="emit_promotion_event")
def emit_promotion_event(workspace: str, model: ModelRef, previous: ModelRef | None, payload: dict[str, Any],
                         data: DataRef | None = None) -> str | None:
    """Emit ``amlflows.model.promoted`` about ``model``, the new champion (related: the ``previous`` champion and the
    ``data`` it was trained on, when given); the event's id.

    Example:
        ```python
        emit_promotion_event("local", candidate, champion, promotion_event_payload(result), data)
        ```
    """
    links = [related(model_resource(previous, workspace), "previous-champion")] if previous else []
    links += [related(data_resource(data, workspace), "data")] if data else []
    return _emit(PROMOTION_EVENT, model.reference, model_resource(model, workspace), links, payload)


def _emit(name: str, about: str, resource: dict[str, str], links: list[dict[str, str]], payload: dict[str, Any]) -> str | None:
    """Emit event ``name`` about ``resource`` (``about`` names it in the log); the event's id, or None, with a
    warning, when Prefect events are turned off here."""
    from prefect.events import emit_event

    event = emit_event(event=name, resource=resource, related=links, payload=payload)
    if event is None:
        get_run_logger().warning("Prefect events are turned off here: %s about %s was not emitted", name, about)
        return None
    get_run_logger().info("Emitted %s about %s (event %s)", name, about, event.id)
    return str(event.id)
