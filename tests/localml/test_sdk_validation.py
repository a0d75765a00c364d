"""What localml takes and returns passes the azure-ai-ml SDK's own validation and REST conversion.

Azure is unreachable here, so this is how we know the same entities would be accepted by Azure ML.
"""

from __future__ import annotations

import pytest
from azure.ai.ml import Input, Output, command
from azure.ai.ml.entities import AmlCompute, CommandJob, Data, Environment, Job, Model
from azure.ai.ml.exceptions import ValidationException

from localml.errors import LocalMLValidationError

ENV = "AzureML-sklearn-1.5@latest"


def sdk_checks(entity):
    """Run the entity's own ``_validate()`` (where it has one) and return its ``_to_rest_object()``."""
    if hasattr(entity, "_validate"):
        result = entity._validate()
        if result is not None:  # some entities return a ValidationResult, others raise
            assert result.passed, result.error_messages
    return entity._to_rest_object()


def build_job(code_dir, data_path, **kwargs):
    return command(
        code=str(code_dir),
        command="python seen.py ${{inputs.count}} ${{inputs.notes}} ${{outputs.out}}",
        inputs={"count": 3, "notes": Input(type="uri_file", path=str(data_path))},
        outputs={"out": Output(type="uri_folder")},
        environment=ENV,
        display_name="validated job",
        experiment_name="sdk-validation",
        **kwargs,
    )


def test_command_builder_with_inputs_and_outputs_passes_sdk_validation(code_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("notes")
    job = build_job(code_dir, notes, compute="cpu-cluster")._to_job()
    assert isinstance(job, CommandJob)
    job._validate()
    rest = job._to_rest_object()
    assert rest.properties.job_type == "Command"
    assert set(rest.properties.inputs) == {"count", "notes"} and set(rest.properties.outputs) == {"out"}


def test_sdk_and_localml_both_reject_an_undeclared_input(ml_client, code_dir):
    job = command(code=str(code_dir), command="python seen.py ${{inputs.nope}}", environment=ENV)
    with pytest.raises(ValidationException, match="nope"):
        job._to_job()._validate()
    with pytest.raises(LocalMLValidationError, match="nope"):
        ml_client.jobs.create_or_update(job)


def test_jobs_localml_returns_pass_sdk_validation(ml_client, code_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("notes")
    ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", max_instances=2)).result()
    submitted = ml_client.jobs.create_or_update(build_job(code_dir, notes, compute="cpu-cluster"))
    ml_client.jobs.stream(submitted.name)
    finished = ml_client.jobs.get(submitted.name)
    listed = list(ml_client.jobs.list())
    assert [j.name for j in listed] == [submitted.name]
    for job in (submitted, finished, listed[0]):
        # the class Azure's jobs.get gives for a command job (the SDK's own REST loader decides: a Command node)
        as_azure = Job._from_rest_object(job._to_job()._to_rest_object())
        assert type(job) is type(as_azure), (type(job), type(as_azure))
        assert isinstance(sdk_checks(job), dict)  # a node's REST form
        rest = sdk_checks(job._to_job())
        assert rest.properties.job_type == "Command"
        assert rest.properties.compute_id == "cpu-cluster"
        assert set(rest.properties.inputs) == {"count", "notes"} and set(rest.properties.outputs) == {"out"}
        assert (as_azure.name, as_azure.command, as_azure.experiment_name) == (
            submitted.name,
            submitted.command,
            "sdk-validation",
        )
    assert finished.status == "Completed"
    assert finished.display_name == "validated job"
    inputs = finished._to_job().inputs
    assert inputs["count"] == 3
    # the uploaded file is named by its datastore URI, as Azure names an uploaded input
    assert inputs["notes"].path.startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")


def test_assets_localml_returns_pass_sdk_rest_conversion(ml_client, tmp_path, helpers):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("a\n1\n")
    data = [
        ml_client.data.create_or_update(Data(name="file", path=str(tmp_path / "data" / "a.csv"), type="uri_file")),
        ml_client.data.create_or_update(Data(name="folder", path=str(tmp_path / "data"), type="uri_folder")),
        ml_client.data.create_or_update(Data(name="table", path=str(helpers.DIABETES_DIR), type="mltable")),
    ]
    for asset in data + [ml_client.data.get("table", label="latest")]:
        rest = sdk_checks(asset)
        assert rest.properties.data_uri == asset.path
        assert rest.properties.data_type.lower().replace("_", "") == asset.type.replace("_", "")

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    models = [
        ml_client.models.create_or_update(Model(name="custom", path=str(tmp_path / "data"), type="custom_model")),
        ml_client.models.create_or_update(Model(name="mlflow", path=str(tmp_path / "model"), type="mlflow_model")),
    ]
    for model in models + list(ml_client.models.list()):
        rest = sdk_checks(model)
        assert rest.properties.model_uri == model.path and rest.properties.model_type == model.type

    created = ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", max_instances=3)).result()
    for compute in (created, ml_client.compute.get("cpu-cluster"), *ml_client.compute.list()):
        rest = sdk_checks(compute)
        assert rest.properties.properties.scale_settings.max_node_count == 3

    environment = ml_client.environments.create_or_update(
        Environment(name="env", image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest")
    )
    assert sdk_checks(environment).properties.image == environment.image
    assert sdk_checks(ml_client.datastores.get_default()).properties.container_name == "workspaceblobstore"
