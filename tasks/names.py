"""Azure ML's naming rules, for the flows' parameter models (the rules themselves live in ``amlkit.names``).

Flows import tasks, not amlkit: this module is how a parameter model checks a name the way Azure and localml
will, before the flow starts.
"""

from __future__ import annotations

from amlkit.names import BATCH_ENDPOINT, COMPONENT, COMPUTE, DATA, DEPLOYMENT, ENDPOINT, ENVIRONMENT, EXPERIMENT, JOB, MODEL, NameRule

__all__ = ["BATCH_ENDPOINT", "COMPONENT", "COMPUTE", "DATA", "DEPLOYMENT", "ENDPOINT", "ENVIRONMENT", "EXPERIMENT", "JOB", "MODEL", "NameRule"]
