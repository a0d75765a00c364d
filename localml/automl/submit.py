"""An AutoML job, checked at submission and turned into the command that runs it.

The checks read the training data, so a missing target column, a single class or an
empty table fails here, before any job exists.
"""

from __future__ import annotations

import json
from pathlib import Path

from azure.ai.ml import Input, Output, command

from amlkit.automl.featurization import check_training_table, plan_featurization
from amlkit.automl.settings import settings_from_job
from amlkit.mltable import MLTableError
from localml.errors import LocalMLValidationError

#: Job properties copied from the driver's summary once the job ends.
SUMMARY_PROPERTIES = ("best_child_run_id", "best_algorithm", "primary_metric", "best_score")
DATA_INPUTS = ("training_data", "validation_data", "test_data")


def automl_command(job, data_operations, staging: Path):
    """The command job that runs ``job`` with localml's AutoML driver (its config written under ``staging``)."""
    settings = settings_from_job(job)
    inputs = {}
    for key in DATA_INPUTS:
        value = getattr(job, key, None)
        if value is None:
            continue
        if str(getattr(value, "type", "")) != "mltable":
            raise LocalMLValidationError(
                f"AutoML {key} must be an MLTable input (Input(type='mltable', ...)), got type '{getattr(value, 'type', None)}'. "
                "Register the data as a folder with an MLTable file (type mltable)."
            )
        inputs[key] = value
    if "training_data" not in inputs:
        raise LocalMLValidationError("The AutoML job has no training_data.")
    table = _read(data_operations, inputs["training_data"].path)
    check_training_table(table, settings)
    plan_featurization(table, settings, "checked at submission")
    config = staging / "automl"
    config.mkdir(parents=True, exist_ok=True)
    (config / "automl.json").write_text(json.dumps(settings.to_dict(), indent=2, sort_keys=True))
    arguments = " ".join(f"--{key} ${{{{inputs.{key}}}}}" for key in inputs)
    return command(
        name=job.name,
        code=str(config),
        command=f"python -m localml.automl.driver --config automl.json {arguments} --best_model ${{{{outputs.best_model}}}}",
        inputs=inputs,
        outputs={"best_model": Output(type="mlflow_model")},
        environment="AzureML-automl@latest",
        compute=job.compute,
        experiment_name=job.experiment_name,
    )._to_job()


def _read(data_operations, reference: str):
    try:
        return data_operations.to_dataframe(str(reference))
    except MLTableError as error:
        raise LocalMLValidationError(f"AutoML training data: {error}") from None


def pin_inputs(job, prepared_inputs: dict) -> None:
    """Write the versions the command pinned (``@latest`` resolved, local paths uploaded) back into the AutoML job."""
    for key in DATA_INPUTS:
        if key in prepared_inputs:
            setattr(job, key, Input(type="mltable", path=prepared_inputs[key].path))
