"""The ``detect_drift`` task: a current version of a data asset against the data a model was trained on.

The statistics are ``amlkit.drift``'s (a test and the PSI per feature); this task reads the two tables
from the workspace and logs what drifted.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from amlkit.drift import DriftReport, compare_tables
from tasks.data import read_table
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client


@task(name="detect_drift", **TRANSIENT_RETRIES)
def detect_drift(
    workspace: str, reference: str, current: str, exclude: list[str], p_value: float = 0.05, psi_threshold: float = 0.1
) -> DriftReport:
    """Compare two versions of a data asset (or local MLTable folders) feature by feature.

    Example:
        ```python
        report = detect_drift("local", "azureml:diabetes:1", "azureml:diabetes:2", exclude=["PatientID", "Diabetic"])
        report.drift_share, report.drifted   # 0.125, ["PlasmaGlucose"]
        ```
    """
    client = get_client(workspace)
    report = compare_tables(read_table(client, reference), read_table(client, current), exclude, p_value, psi_threshold,
                            names=(reference, current))
    logger = get_run_logger()
    for feature in report.features:
        logger.info("%s %s: PSI %.3f, %s p = %.3g", "DRIFT" if feature.drifted else "ok", feature.feature, feature.psi, feature.test, feature.p_value)
    return report


def drift_event_payload(report: DriftReport) -> dict[str, Any]:
    """What a drift event carries: the share, the threshold settings and each drifted feature's figures."""
    return {
        "reference": report.reference,
        "current": report.current,
        "drift_share": round(report.drift_share, 4),
        "drifted_features": {
            f.feature: {"psi": round(f.psi, 4), "p_value": f.p_value, "test": f.test} for f in report.features if f.drifted
        },
        "rows": {"reference": report.reference_rows, "current": report.current_rows},
    }
