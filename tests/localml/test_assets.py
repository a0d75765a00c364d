"""localml assets, compute, environments and workspace: real catalog, real MLflow store, real jobs."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from azure.ai.ml import Input, command
from azure.ai.ml.constants import ListViewType
from azure.ai.ml.entities import AmlCompute, Data, Environment, Model
from azure.core.exceptions import ResourceNotFoundError

from localml.errors import LocalMLValidationError

ENV = "AzureML-sklearn-1.5@latest"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def local(ml_client, uri):
    """The file or folder behind a registered asset's azureml:// path."""
    return ml_client._workspace.resolve_uri(uri)


# --------------------------------------------------------------------------- data versions

def test_data_versions_auto_increment_and_identical_content_keeps_its_version(ml_client, tmp_path):
    source = write(tmp_path / "in" / "greeting.txt", "one")
    v1 = ml_client.data.create_or_update(Data(name="greeting", path=str(source), type="uri_file"))
    assert v1.version == "1"
    again = ml_client.data.create_or_update(Data(name="greeting", path=str(source), type="uri_file"))
    assert again.version == "1" and again.path == v1.path
    source.write_text("two")
    v2 = ml_client.data.create_or_update(Data(name="greeting", path=str(source), type="uri_file"))
    assert v2.version == "2" and v2.path != v1.path
    assert [d.version for d in ml_client.data.list(name="greeting")] == ["1", "2"]
    assert ml_client.data.get("greeting", label="latest").version == "2"
    assert ml_client.data.get("greeting", version="1").path == v1.path
    assert [(d.name, d.version) for d in ml_client.data.list()] == [("greeting", "2")]


def test_data_explicit_existing_version_with_other_content_is_an_error(ml_client, tmp_path):
    source = write(tmp_path / "in" / "a.txt", "first")
    ml_client.data.create_or_update(Data(name="pinned", version="7", path=str(source), type="uri_file"))
    # same content under the same explicit version: the version is returned, unchanged
    assert ml_client.data.create_or_update(Data(name="pinned", version="7", path=str(source), type="uri_file")).version == "7"
    source.write_text("second")
    with pytest.raises(LocalMLValidationError, match=r"'pinned' version '7' already exists with other content"):
        ml_client.data.create_or_update(Data(name="pinned", version="7", path=str(source), type="uri_file"))
    assert local(ml_client, ml_client.data.get("pinned", version="7").path).read_text() == "first"
    # the next automatic number follows the highest numeric version
    assert ml_client.data.create_or_update(Data(name="pinned", path=str(source), type="uri_file")).version == "8"


def test_data_get_needs_a_version_or_label(ml_client, tmp_path):
    source = write(tmp_path / "in" / "a.txt", "x")
    ml_client.data.create_or_update(Data(name="thing", path=str(source), type="uri_file"))
    with pytest.raises(LocalMLValidationError, match=r"version or label='latest'.*'thing'"):
        ml_client.data.get("thing")
    with pytest.raises(LocalMLValidationError, match="not both"):
        ml_client.data.get("thing", version="1", label="latest")
    with pytest.raises(LocalMLValidationError, match="only 'latest'"):
        ml_client.data.get("thing", label="production")


def test_data_local_path_is_copied_at_registration(ml_client, tmp_path):
    source = write(tmp_path / "in" / "data.csv", "a,b\n1,2\n")
    folder = write(tmp_path / "folder" / "part-0.csv", "x\n1\n").parent
    file_asset = ml_client.data.create_or_update(Data(name="csv", path=str(source), type="uri_file"))
    folder_asset = ml_client.data.create_or_update(Data(name="parts", path=str(folder), type="uri_folder"))
    assert file_asset.path.startswith("azureml://datastores/workspaceblobstore/paths/")
    source.write_text("a,b\n9,9\n")
    (folder / "part-0.csv").write_text("changed")
    (folder / "part-1.csv").write_text("new")
    shutil.rmtree(tmp_path / "in")
    assert local(ml_client, file_asset.path).read_text() == "a,b\n1,2\n"
    registered_folder = local(ml_client, ml_client.data.get("parts", version="1").path)
    assert sorted(p.name for p in registered_folder.iterdir()) == ["part-0.csv"]
    assert (registered_folder / "part-0.csv").read_text() == "x\n1\n"
    assert local(ml_client, ml_client.data.get("csv", label="latest").path).read_text() == "a,b\n1,2\n"


def test_data_type_must_match_the_path(ml_client, tmp_path):
    folder = write(tmp_path / "table" / "data.csv", "a\n1\n").parent
    with pytest.raises(LocalMLValidationError, match=r"uri_file needs a file, but .* is a folder"):
        ml_client.data.create_or_update(Data(name="bad", path=str(folder), type="uri_file"))
    with pytest.raises(LocalMLValidationError, match=r"Data asset 'bad'.*No MLTable file"):
        ml_client.data.create_or_update(Data(name="bad", path=str(folder), type="mltable"))
    with pytest.raises(LocalMLValidationError, match=r"uri_folder needs a folder"):
        ml_client.data.create_or_update(Data(name="bad", path=str(folder / "data.csv"), type="uri_folder"))
    with pytest.raises(LocalMLValidationError, match="does not exist"):
        ml_client.data.create_or_update(Data(name="bad", path=str(tmp_path / "missing.csv"), type="uri_file"))
    assert list(ml_client.data.list()) == []


def test_unknown_assets_raise_resource_not_found_naming_them(ml_client, tmp_path, code_dir):
    for get in (
        lambda: ml_client.data.get("no-such-data", version="1"),
        lambda: ml_client.data.get("no-such-data", label="latest"),
        lambda: ml_client.models.get("no-such-data", version="1"),
        lambda: ml_client.environments.get("no-such-data", version="1"),
    ):
        with pytest.raises(ResourceNotFoundError, match="no-such-data"):
            get()
    source = write(tmp_path / "in" / "a.txt", "x")
    ml_client.data.create_or_update(Data(name="known", path=str(source), type="uri_file"))
    with pytest.raises(ResourceNotFoundError, match=r"'known' version '5'.*Known: 1"):
        ml_client.data.get("known", version="5")
    job = command(
        code=str(code_dir),
        command="python seen.py ${{inputs.data}}",
        inputs={"data": Input(type="uri_file", path="azureml:no-such-data:1")},
        environment=ENV,
    )
    with pytest.raises(ResourceNotFoundError, match="no-such-data"):
        ml_client.jobs.create_or_update(job)
    assert list(ml_client.jobs.list()) == []


def test_asset_references_resolve_as_job_inputs(ml_client, tmp_path, code_dir, helpers):
    source = write(tmp_path / "in" / "greeting.txt", "one")
    ml_client.data.create_or_update(Data(name="greeting", path=str(source), type="uri_file"))
    source.write_text("two")
    ml_client.data.create_or_update(Data(name="greeting", path=str(source), type="uri_file"))
    ml_client.data.create_or_update(Data(name="diabetes", path=str(helpers.DIABETES_DIR), type="mltable"))
    ml_client.models.create_or_update(Model(name="weights", path=str(write(tmp_path / "model" / "w.bin", "w").parent), type="custom_model"))
    job = ml_client.jobs.create_or_update(
        command(
            code=str(code_dir),
            command="python seen.py ${{inputs.pinned}} ${{inputs.newest}} ${{inputs.table}} ${{inputs.model}}",
            inputs={
                "pinned": Input(type="uri_file", path="azureml:greeting:1"),
                "newest": Input(type="uri_file", path="azureml:greeting@latest"),
                "table": Input(type="mltable", path="azureml:diabetes@latest"),
                "model": Input(type="custom_model", path="azureml:weights@latest"),  # a model is an input too
            },
            environment=ENV,
        )
    )
    # @latest is pinned to the version it meant at submission, as Azure does
    assert job.inputs["newest"].path.removeprefix("azureml:") == "greeting:2"
    assert job.inputs["table"].path.removeprefix("azureml:") == "diabetes:1"
    ml_client.jobs.stream(job.name)
    ml_client.jobs.download(job.name, download_path=tmp_path / "dl")
    seen = json.loads((tmp_path / "dl" / "artifacts" / "outputs" / "seen.json").read_text())
    assert [item.get("text") for item in seen[:2]] == ["one", "two"]
    assert seen[2]["listing"] == ["MLTable", "diabetes.csv"]
    assert seen[3]["listing"] == ["w.bin"]
    # the job read registered copies, not the source
    assert all(str(tmp_path / "in") not in item["arg"] for item in seen)


def test_asset_reference_of_the_wrong_type_is_rejected(ml_client, tmp_path, code_dir):
    source = write(tmp_path / "in" / "a.txt", "x")
    ml_client.data.create_or_update(Data(name="afile", path=str(source), type="uri_file"))
    job = command(
        code=str(code_dir),
        command="python seen.py ${{inputs.data}}",
        inputs={"data": Input(type="uri_folder", path="azureml:afile:1")},
        environment=ENV,
    )
    with pytest.raises(LocalMLValidationError, match="declared uri_folder, but data asset 'afile:1' is uri_file"):
        ml_client.jobs.create_or_update(job)
    ml_client.models.create_or_update(Model(name="weights", path=str(source.parent), type="custom_model"))
    job = command(code=str(code_dir), command="python seen.py ${{inputs.model}}", inputs={"model": Input(type="mlflow_model", path="azureml:weights:1")}, environment=ENV)
    with pytest.raises(LocalMLValidationError, match="declared mlflow_model, but model 'weights:1' is custom_model"):
        ml_client.jobs.create_or_update(job)
    assert list(ml_client.jobs.list()) == []


# --------------------------------------------------------------------------- models

MLMODEL = "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"


def test_model_from_a_local_folder(ml_client, tmp_path):
    folder = write(tmp_path / "model" / "weights.bin", "w1").parent
    custom = ml_client.models.create_or_update(Model(name="custom", path=str(folder), type="custom_model"))
    assert (custom.name, custom.version, custom.type) == ("custom", "1", "custom_model")
    (folder / "weights.bin").write_text("w2")
    assert (local(ml_client, custom.path) / "weights.bin").read_text() == "w1"
    with pytest.raises(LocalMLValidationError, match=r"mlflow_model needs a folder with an MLmodel file"):
        ml_client.models.create_or_update(Model(name="flow", path=str(folder), type="mlflow_model"))
    write(folder / "MLmodel", MLMODEL)
    flow = ml_client.models.create_or_update(Model(name="flow", path=str(folder), type="mlflow_model"))
    assert flow.type == "mlflow_model" and (local(ml_client, flow.path) / "MLmodel").is_file()
    with pytest.raises(LocalMLValidationError, match="does not exist"):
        ml_client.models.create_or_update(Model(name="gone", path=str(tmp_path / "nothing"), type="custom_model"))


@pytest.mark.slow
def test_model_from_a_training_job_output_and_from_its_run(ml_client, tmp_path, helpers):
    job = ml_client.jobs.create_or_update(
        command(
            code=str(helpers.TRAIN_DIR),
            command="python train.py --training_data ${{inputs.training_data}} --max_iter 5",
            inputs={"training_data": Input(type="uri_file", path=str(helpers.DIABETES_DIR / "diabetes.csv"))},
            environment=ENV,
            display_name="train-diabetes",
        )
    )
    ml_client.jobs.stream(job.name)
    assert ml_client.jobs.get(job.name).status == "Completed"

    from_job = ml_client.models.create_or_update(
        Model(
            name="diabetes-job",
            path=f"azureml://jobs/{job.name}/outputs/artifacts/paths/outputs/model",
            type="mlflow_model",
        )
    )
    from_run = ml_client.models.create_or_update(
        Model(name="diabetes-run", path=f"runs:/{job.name}/outputs/model", type="mlflow_model")
    )
    for model in (from_job, from_run):
        assert model.version == "1" and model.type == "mlflow_model"
        assert model.job_name == job.name
        assert (local(ml_client, model.path) / "MLmodel").is_file()
    # both name the same files
    assert from_job.path == from_run.path
    # and the workspace's MLflow registry holds both, linked to the job's run
    from mlflow.tracking import MlflowClient

    registry = MlflowClient(tracking_uri=ml_client.mlflow_tracking_uri, registry_uri=ml_client.mlflow_tracking_uri)
    for model in (from_job, from_run):
        version = registry.get_model_version(model.name, model.version)
        assert (version.run_id, version.source) == (job.name, local(ml_client, model.path).as_uri())

    import mlflow.pyfunc
    import pandas as pd

    rows = pd.read_csv(helpers.DIABETES_DIR / "diabetes.csv", nrows=3).drop(columns=["PatientID", "Diabetic"])
    predictions = mlflow.pyfunc.load_model(str(local(ml_client, from_job.path))).predict(rows)
    assert len(predictions) == 3 and set(predictions) <= {0, 1}

    with pytest.raises(ResourceNotFoundError, match="no_such_job"):
        ml_client.models.create_or_update(Model(name="x", path="runs:/no_such_job/outputs/model", type="mlflow_model"))
    with pytest.raises((ResourceNotFoundError, LocalMLValidationError), match="nothing_here"):
        ml_client.models.create_or_update(
            Model(name="x", path=f"azureml://jobs/{job.name}/outputs/artifacts/paths/outputs/nothing_here", type="custom_model")
        )


def test_model_list_get_and_archive(ml_client, tmp_path):
    folder = write(tmp_path / "model" / "weights.bin", "v1").parent
    ml_client.models.create_or_update(Model(name="clf", path=str(folder), type="custom_model", tags={"round": "1"}))
    (folder / "weights.bin").write_text("v2")
    ml_client.models.create_or_update(Model(name="clf", path=str(folder), type="custom_model", tags={"round": "2"}))
    other = write(tmp_path / "other" / "w.bin", "o").parent
    ml_client.models.create_or_update(Model(name="other", path=str(other)))
    assert [m.version for m in ml_client.models.list(name="clf")] == ["1", "2"]
    assert sorted((m.name, m.version) for m in ml_client.models.list()) == [("clf", "2"), ("other", "1")]
    assert ml_client.models.get("clf", label="latest").tags == {"round": "2"}

    ml_client.models.archive("clf", version="2")
    assert [m.version for m in ml_client.models.list(name="clf")] == ["1"]
    assert ml_client.models.get("clf", label="latest").version == "1"
    assert sorted((m.name, m.version) for m in ml_client.models.list()) == [("clf", "1"), ("other", "1")]
    # an archived version can still be fetched by its number, and numbers are never reused
    assert ml_client.models.get("clf", version="2").tags == {"round": "2"}
    assert [m.version for m in ml_client.models.list(name="clf", list_view_type=ListViewType.ARCHIVED_ONLY)] == ["2"]
    assert [m.version for m in ml_client.models.list(name="clf", list_view_type=ListViewType.ALL)] == ["1", "2"]
    with pytest.raises(LocalMLValidationError, match="list_view_type must be one of ActiveOnly, ArchivedOnly, All"):
        ml_client.models.list(name="clf", list_view_type="archived")
    (folder / "weights.bin").write_text("v3")
    assert ml_client.models.create_or_update(Model(name="clf", path=str(folder))).version == "3"

    ml_client.models.archive("other", version="1")
    with pytest.raises(ResourceNotFoundError, match="other"):
        ml_client.models.get("other", label="latest")
    with pytest.raises(ResourceNotFoundError, match="clf"):
        ml_client.models.archive("clf", version="99")


def test_model_version_tags_change_in_place_and_its_files_download(ml_client, tmp_path):
    folder = write(tmp_path / "model" / "weights.bin", "w1").parent
    ml_client.models.create_or_update(Model(name="clf", path=str(folder), type="custom_model", tags={"round": "1"}))
    model = ml_client.models.get("clf", version="1")
    model.tags["verdict"] = "passed"
    model.description = "reviewed"
    updated = ml_client.models.create_or_update(model)
    assert (updated.version, updated.tags, updated.description) == ("1", {"round": "1", "verdict": "passed"}, "reviewed")
    assert [m.version for m in ml_client.models.list(name="clf")] == ["1"]
    # the files of a version never change, even through an update of its tags
    other = write(tmp_path / "other" / "weights.bin", "w2").parent
    with pytest.raises(LocalMLValidationError, match="only its description, tags and stage may"):
        ml_client.models.create_or_update(Model(name="clf", version="1", path=str(other), type="custom_model"))
    ml_client.models.download("clf", "1", download_path=tmp_path / "downloaded")
    assert (tmp_path / "downloaded" / "clf" / "model" / "weights.bin").read_text() == "w1"


# --------------------------------------------------------------------------- compute

def test_compute_create_get_list(ml_client):
    created = ml_client.compute.begin_create_or_update(
        AmlCompute(name="cpu-cluster", size="STANDARD_DS11_V2", min_instances=0, max_instances=2)
    ).result()
    assert (created.name, created.max_instances, created.provisioning_state) == ("cpu-cluster", 2, "Succeeded")
    got = ml_client.compute.get("cpu-cluster")
    assert (got.name, got.size, got.max_instances) == ("cpu-cluster", "STANDARD_DS11_V2", 2)
    ml_client.begin_create_or_update(AmlCompute(name="gpu-cluster", max_instances=1)).result()
    # updating keeps one entry and takes the new cap
    ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", max_instances=3)).result()
    assert sorted((c.name, c.max_instances) for c in ml_client.compute.list()) == [("cpu-cluster", 3), ("gpu-cluster", 1)]
    with pytest.raises(ResourceNotFoundError, match="no-such-cluster"):
        ml_client.compute.get("no-such-cluster")


def test_job_on_unknown_compute_is_not_found_before_any_job_exists(ml_client, code_dir):
    ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", max_instances=1)).result()
    job = command(code=str(code_dir), command="python seen.py", environment=ENV, compute="gpu-cluster")
    with pytest.raises(ResourceNotFoundError, match=r"gpu-cluster.*Known: cpu-cluster"):
        ml_client.jobs.create_or_update(job)
    assert list(ml_client.jobs.list()) == []
    assert not (ml_client.root / "jobs").exists()


# --------------------------------------------------------------------------- environments and workspace

def test_environment_versions(ml_client, tmp_path):
    image = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    v1 = ml_client.environments.create_or_update(Environment(name="train-env", image=image, description="first"))
    assert v1.version == "1"
    assert ml_client.environments.create_or_update(Environment(name="train-env", image=image, description="first")).version == "1"
    conda = write(tmp_path / "conda.yml", "name: train\ndependencies:\n  - python=3.11\n  - pip:\n    - scikit-learn\n")
    v2 = ml_client.environments.create_or_update(
        Environment(name="train-env", image=image, conda_file=str(conda), description="second")
    )
    assert v2.version == "2"
    assert v2.conda_file["dependencies"][1] == {"pip": ["scikit-learn"]}
    assert ml_client.environments.get("train-env", version="1").description == "first"
    assert ml_client.environments.get("train-env", label="latest").version == "2"
    assert [e.version for e in ml_client.environments.list(name="train-env")] == ["1", "2"]
    with pytest.raises(LocalMLValidationError, match="already exists with other content"):
        ml_client.environments.create_or_update(Environment(name="train-env", version="1", image="other:1"))
    curated = ml_client.environments.get("AzureML-sklearn-1.5", label="latest")
    assert curated.name == "AzureML-sklearn-1.5"
    assert ml_client.environments.runtime_for(ENV) == ({"interpreter": sys.executable}, [])


def _register_version_44(ml_client, kind, tmp_path):
    """Register version 44 of an asset of ``kind``; returns its name (a curated environment needs none)."""
    file = write(tmp_path / "data.csv", "a\n1\n")
    if kind == "data":
        ml_client.data.create_or_update(Data(name="answers", version="44", path=str(file), type="uri_file"))
    elif kind == "models":
        ml_client.models.create_or_update(Model(name="answers", version="44", path=str(file), type="custom_model"))
    elif kind == "environments":
        ml_client.environments.create_or_update(Environment(name="answers", version="44", image="python:3.11-slim"))
    elif kind == "components":
        component = command(name="answers", command="echo 42", environment=ENV).component
        component.version = "44"
        ml_client.components.create_or_update(component)
    return "AzureML-sklearn-1.5" if kind == "curated environments" else "answers"


@pytest.mark.parametrize("kind", ["data", "models", "environments", "components", "curated environments"])
def test_every_asset_kind_gets_a_version_given_as_an_int_as_azure_does(ml_client, tmp_path, kind):
    name = _register_version_44(ml_client, kind, tmp_path)
    operations = getattr(ml_client, kind.removeprefix("curated "))
    asset = operations.get(name, version=44)
    assert (asset.name, asset.version) == (name, "44")


def test_workspace_tracking_uri_and_default_datastore(ml_client):
    workspace = ml_client.workspaces.get(ml_client.workspace_name)
    assert workspace.name == ml_client.workspace_name == "localml"
    db = ml_client.root / "mlflow.db"
    assert workspace.mlflow_tracking_uri == ml_client.mlflow_tracking_uri == f"sqlite:///{db}"
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(tracking_uri=workspace.mlflow_tracking_uri).create_experiment("probe")
    assert db.is_file() and experiment_id
    with pytest.raises(ResourceNotFoundError, match="elsewhere"):
        ml_client.workspaces.get("elsewhere")

    default = ml_client.datastores.get_default()
    assert default.name == "workspaceblobstore"
    assert ml_client.datastores.get("workspaceblobstore").name == "workspaceblobstore"
    assert [d.name for d in ml_client.datastores.list()] == ["workspaceblobstore"]
    assert (ml_client.root / "datastores" / "workspaceblobstore").is_dir()
    with pytest.raises(ResourceNotFoundError, match="otherstore"):
        ml_client.datastores.get("otherstore")


# --------------------------------------------------------------------------- registered datastores
SECRETS = ("account-key-0123456789", "sv=2024&sig=sas-token-0123456789", "sp-secret-0123456789")


def three_datastores():
    from azure.ai.ml.entities import (
        AccountKeyConfiguration,
        AzureBlobDatastore,
        AzureDataLakeGen2Datastore,
        AzureFileDatastore,
        SasTokenConfiguration,
        ServicePrincipalConfiguration,
    )

    key, sas, secret = SECRETS
    return (
        AzureBlobDatastore(name="Blob_Store", account_name="acct", container_name="raw", credentials=AccountKeyConfiguration(account_key=key)),
        AzureFileDatastore(name="file_store", account_name="acct", file_share_name="share", credentials=SasTokenConfiguration(sas_token=sas)),
        AzureDataLakeGen2Datastore(
            name="lake", account_name="acct", filesystem="fs", description="the lake",
            credentials=ServicePrincipalConfiguration(tenant_id="tenant-1", client_id="client-1", client_secret=secret),
        ),
    )


def test_blob_adls_gen2_and_file_datastores_are_created_listed_got_and_deleted(ml_client):
    blob, file_share, lake = three_datastores()
    ml_client.create_or_update(blob)  # the client's dispatch, as MLClient.create_or_update
    for datastore in (file_share, lake):
        ml_client.datastores.create_or_update(datastore)
    assert [d.name for d in ml_client.datastores.list()] == ["workspaceblobstore", "Blob_Store", "file_store", "lake"]
    got = ml_client.datastores.get("blob_store")  # names are case-insensitive
    assert (type(got).__name__, got.name, got.account_name, got.container_name) == ("AzureBlobDatastore", "Blob_Store", "acct", "raw")
    assert ml_client.datastores.get("file_store").file_share_name == "share"
    got = ml_client.datastores.get("lake")
    assert (type(got).__name__, got.filesystem, got.description) == ("AzureDataLakeGen2Datastore", "fs", "the lake")
    assert (ml_client.root / "datastores" / "blob_store").is_dir()

    ml_client.datastores.delete("lake")
    with pytest.raises(ResourceNotFoundError, match="Datastore 'lake' was not found.*Known: workspaceblobstore, Blob_Store, file_store"):
        ml_client.datastores.get("lake")
    with pytest.raises(ResourceNotFoundError, match="Datastore 'lake'"):
        ml_client.datastores.delete("lake")
    with pytest.raises(LocalMLValidationError, match="default datastore and cannot be deleted"):
        ml_client.datastores.delete("workspaceblobstore")
    with pytest.raises(LocalMLValidationError, match="default datastore and cannot be replaced"):
        ml_client.datastores.create_or_update(type(blob)(name="workspaceblobstore", account_name="a", container_name="c"))


def test_a_datastores_secrets_come_back_redacted_as_from_azure_and_are_written_nowhere(ml_client):
    for datastore in three_datastores():
        ml_client.datastores.create_or_update(datastore)
    blob, file_share, lake = (ml_client.datastores.get(name) for name in ("Blob_Store", "file_store", "lake"))
    assert (blob.credentials.type, blob.credentials.account_key) == ("account_key", None)
    assert (file_share.credentials.type, file_share.credentials.sas_token) == ("sas", None)
    assert (lake.credentials.tenant_id, lake.credentials.client_id, lake.credentials.client_secret) == ("tenant-1", "client-1", None)
    written = [path.read_bytes() for path in ml_client.root.rglob("*") if path.is_file()]  # the catalog and its WAL too
    assert not [secret for secret in SECRETS if any(secret.encode() in content for content in written)]
    with pytest.raises(NotImplementedError, match="include_secrets=True"):
        ml_client.datastores.get("lake", include_secrets=True)


def test_a_datastore_of_a_type_localml_does_not_serve_is_refused_naming_it(ml_client):
    from azure.ai.ml.entities import AzureDataLakeGen1Datastore

    with pytest.raises(NotImplementedError, match="datastores of type AzureDataLakeGen1Datastore"):
        ml_client.create_or_update(AzureDataLakeGen1Datastore(name="gen1", store_name="store"))
    assert [d.name for d in ml_client.datastores.list()] == ["workspaceblobstore"]


def test_a_registered_datastore_serves_job_outputs_data_assets_and_job_inputs(ml_client, code_dir, helpers, tmp_path):
    from azure.ai.ml import Output

    ml_client.datastores.create_or_update(three_datastores()[0])
    store = "azureml://datastores/Blob_Store/paths"
    writer = ml_client.jobs.create_or_update(command(
        command="mkdir -p ${{outputs.out}} && echo hello > ${{outputs.out}}/greeting.txt", environment=ENV,
        outputs={"out": Output(type="uri_folder", path=f"{store}/greetings/")},
    ))
    assert helpers.wait_for_status(ml_client, writer.name) == "Completed"
    assert (ml_client.root / "datastores" / "blob_store" / "greetings" / "greeting.txt").read_text() == "hello\n"

    ml_client.data.create_or_update(Data(name="greeting", path=f"{store}/greetings/greeting.txt", type="uri_file"))
    reader = ml_client.jobs.create_or_update(command(
        code=str(code_dir), command="python seen.py ${{inputs.file}} ${{inputs.folder}}", environment=ENV,
        inputs={"file": Input(type="uri_file", path="azureml:greeting:1"), "folder": Input(type="uri_folder", path=f"{store}/greetings/")},
    ))
    assert helpers.wait_for_status(ml_client, reader.name) == "Completed"
    ml_client.jobs.download(reader.name, download_path=tmp_path / "dl")
    seen = json.loads((tmp_path / "dl" / "artifacts" / "outputs" / "seen.json").read_text())
    assert [item.get("text") or item.get("listing") for item in seen] == ["hello\n", ["greeting.txt"]]


# --------------------------------------------------------------------------- injected faults
def test_every_operation_group_meets_faults_before_and_after_and_a_recording_counts_the_callers_calls(ml_client, tmp_path, monkeypatch):
    from azure.core.exceptions import HttpResponseError

    data = write(tmp_path / "d.csv", "a\n1\n")
    monkeypatch.setenv("LOCALML_FAULTS", "data.create_or_update@after=503x1,compute.list=429x1,models.list=0x1,workspaces.get=500x1")
    with pytest.raises(HttpResponseError, match="503"):
        ml_client.data.create_or_update(Data(name="d", path=str(data), type="uri_file"))
    assert [d.version for d in ml_client.data.list(name="d")] == ["1"]  # the reply was lost, the version is there
    with pytest.raises(HttpResponseError, match="429"):
        ml_client.compute.list()
    with pytest.raises(Exception, match="Injected connection error on models.list"):
        ml_client.models.list()
    with pytest.raises(HttpResponseError, match="500"):
        ml_client.workspaces.get()
    assert list(ml_client.compute.list()) == [] and list(ml_client.models.list()) == []

    monkeypatch.delenv("LOCALML_FAULTS")
    monkeypatch.setenv("LOCALML_RECORD_OPERATIONS", "1")
    ml_client.create_or_update(Data(name="d", path=str(data), type="uri_file"))  # the client's dispatch goes through the group
    ml_client.data.get("d", version="1")
    # a job's submission reads its inputs' assets and the job back inside localml: those are not the caller's calls
    ml_client.jobs.create_or_update(command(
        code=str(write(tmp_path / "code" / "t.py", "print(1)").parent), command="python t.py", environment=ENV,
        inputs={"d": Input(type="uri_file", path="azureml:d:1")},
    ))
    assert ml_client._workspace.catalog.operations_called() == {"data.create_or_update": 1, "data.get": 1, "jobs.create_or_update": 1}
