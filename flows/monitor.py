"""The ``monitor`` flow: a current version of a model's data against the data it was trained on, and a
Prefect event when it has drifted, for the ``retrain`` deployment's trigger to act on.

    model version -> its training data (reference) and the current version -> per-feature tests and PSI
    -> drift share -> report -> ``amlflows.data.drift-detected`` event when the share reaches the threshold
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel, Field

from flows.parameters import FlowParameters, reference_check
from tasks.data import check_data_reference, resolve_data
from tasks.drift import detect_drift, drift_event_payload
from tasks.events import emit_drift_event
from tasks.models import check_model_reference, resolve_model
from tasks.reports import publish_drift_report

#: The tag the baseline, train and tune flows put on a model version: the data it was trained on.
TRAINING_DATA_TAG = "data"


class MonitorParameters(FlowParameters):
    """Parameters of the ``monitor`` flow; the defaults watch the diabetes data the baseline model learned from."""

    workspace: str = Field("local", description="'local', 'local:FOLDER', 'azure', or an AzureMLWorkspace block name")
    data: str = Field("azureml:diabetes@latest", description="The current data: azureml:NAME:VERSION or azureml:NAME@latest")
    model: str = Field("azureml:diabetes-baseline@latest", description="The model the data feeds: azureml:NAME:VERSION or @latest")
    reference_data: str | None = Field(None, description=f"The reference data; the model's training data (its '{TRAINING_DATA_TAG}' tag) if empty")
    exclude_columns: list[str] = Field(
        ["PatientID", "Diabetic"], description="Columns not compared (identifiers, the label)"
    )
    p_value: float = Field(0.05, gt=0, lt=1, description="A feature's test rejects below this p-value")
    psi_threshold: float = Field(0.1, gt=0, description="A feature's PSI must reach this for it to drift (0.1: a moderate shift)")
    drift_share_threshold: float = Field(0.1, gt=0, le=1, description="The event is emitted when this share of the features drift")

    _model_is_a_reference = reference_check(check_model_reference, "model")
    _data_are_references = reference_check(check_data_reference, "data", "reference_data")


class MonitorResult(BaseModel):
    reference: str
    current: str
    model: str
    drift_share: float
    drifted_features: list[str]
    drift_detected: bool
    event_id: str | None = Field(description="The drift event emitted, if any")


@flow(name="monitor")
def monitor(params: MonitorParameters = MonitorParameters.defaults()) -> MonitorResult:
    """Compare the current data with the model's training data, and emit a drift event when it has drifted."""
    params = params.validated()
    workspace = params.workspace
    model = resolve_model(workspace, params.model)
    reference_source = params.reference_data or model.tags.get(TRAINING_DATA_TAG)
    if not reference_source:
        raise ValueError(
            f"Model {model.reference} has no '{TRAINING_DATA_TAG}' tag naming its training data: give reference_data "
            "(azureml:<name>:<version>)."
        )
    reference = resolve_data(workspace, reference_source)
    current = resolve_data(workspace, params.data)
    report = detect_drift(workspace, reference.reference, current.reference, params.exclude_columns, params.p_value, params.psi_threshold)
    detected = bool(report.drifted) and report.drift_share >= params.drift_share_threshold
    event_id = emit_drift_event(workspace, current, model, {**drift_event_payload(report), "model": model.reference}) if detected else None
    publish_drift_report(report, params.drift_share_threshold, event_id)
    return MonitorResult(
        reference=reference.reference,
        current=current.reference,
        model=model.reference,
        drift_share=report.drift_share,
        drifted_features=report.drifted,
        drift_detected=detected,
        event_id=event_id,
    )
