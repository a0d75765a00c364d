"""Nothing a name, a datastore path, a job output or a download target says can reach outside its folder.

The workspace root is ``tmp_path/ws``: a path that climbs out of it lands in ``tmp_path``, where the tests look.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from azure.ai.ml import Output, command
from azure.ai.ml.entities import AmlCompute, AzureBlobDatastore, Data, Environment, Model

from localml.errors import LocalMLValidationError
from localml.workspace import contained

ENV = "AzureML-sklearn-1.5@latest"
BLOBSTORE = "azureml://datastores/workspaceblobstore/paths/"


def everything_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# --------------------------------------------------------------------------- the one check

@pytest.mark.parametrize("relative, expected", [("a/b", "a/b"), ("", "."), ("a/../b", "b"), ("./a", "a"), ("a/", "a")])
def test_a_path_inside_its_base_is_returned_joined_and_normalised(tmp_path, relative, expected):
    assert contained(tmp_path, relative, "Path") == (tmp_path / expected if expected != "." else tmp_path)


@pytest.mark.parametrize("relative", ["..", "../x", "a/../../x", "/etc/hostname", "../" + Path.cwd().name])
def test_a_path_that_climbs_out_or_is_absolute_is_refused_with_what_it_was(tmp_path, relative):
    with pytest.raises(LocalMLValidationError, match="leads outside") as refused:
        contained(tmp_path / "base", relative, "Output path")
    assert str(refused.value).startswith(f"Output path '{relative}' leads outside {tmp_path / 'base'}")


def test_a_sibling_folder_whose_name_starts_like_the_base_is_outside_it(tmp_path):
    with pytest.raises(LocalMLValidationError):
        contained(tmp_path / "ws", "../ws2/x", "Path")


# --------------------------------------------------------------------------- datastore paths and job outputs

def test_a_data_asset_whose_datastore_path_climbs_to_etc_is_refused_and_not_registered(ml_client):
    escape = BLOBSTORE + "../" * 12 + "etc/hostname"
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.data.create_or_update(Data(name="hostname", path=escape, type="uri_file"))
    assert list(ml_client.data.list()) == []


@pytest.mark.parametrize("path", ["../" * 12 + "etc/hostname", "../workspaceblobstore/x.csv", "a/../../../../x.csv"])
def test_a_path_that_climbs_out_of_a_registered_datastore_is_refused_and_not_registered(ml_client, path):
    ml_client.datastores.create_or_update(AzureBlobDatastore(name="own_store", account_name="acct", container_name="c"))
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.data.create_or_update(Data(name="escaped", path=f"azureml://datastores/own_store/paths/{path}", type="uri_file"))
    assert list(ml_client.data.list()) == []


def test_reading_a_datastore_uri_that_climbs_out_is_refused(ml_client):
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.data.to_dataframe(BLOBSTORE + "../../../../outside.csv")


def test_a_job_output_path_that_climbs_out_of_the_datastore_is_refused_at_submission(ml_client, code_dir, tmp_path):
    before = everything_under(tmp_path)
    job = command(
        code=str(code_dir),
        command="python seen.py ${{outputs.out}}",
        outputs={"out": Output(type="uri_folder", path=BLOBSTORE + "../../../x")},
        environment=ENV,
    )
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.jobs.create_or_update(job)
    assert ml_client._workspace.catalog.list_jobs() == []
    assert not (tmp_path / "x").exists()
    assert {p for p in everything_under(tmp_path) - before if ml_client._workspace.root not in p.parents} == set()


def test_a_job_artifact_path_that_climbs_out_of_the_run_is_refused(ml_client, code_dir):
    job = ml_client.jobs.create_or_update(command(code=str(code_dir), command="python seen.py", environment=ENV))
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.models.create_or_update(
            Model(name="escaped", path=f"azureml://jobs/{job.name}/outputs/artifacts/paths/../../../../../etc", type="custom_model")
        )
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.models.create_or_update(Model(name="escaped", path=f"runs:/{job.name}/../../../../etc", type="custom_model"))
    assert list(ml_client.models.list()) == []


# --------------------------------------------------------------------------- downloads

def test_downloading_a_model_whose_stored_name_climbs_out_writes_nothing_above_the_download_folder(ml_client, tmp_path):
    # a version stored before names were checked: the catalog row is written as such a version was
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 16)
    workspace = ml_client._workspace
    record = {"path": workspace.upload(weights), "type": "custom_model", "job_name": None, "description": None,
              "tags": {}, "properties": {}, "stage": None}
    with workspace.catalog.transaction() as db:
        workspace.catalog.insert_asset(db, "model", "../../m", "x1", record)
    download = tmp_path / "a" / "b" / "downloads"
    download.mkdir(parents=True)
    before = everything_under(tmp_path)
    with pytest.raises(LocalMLValidationError, match="leads outside"):
        ml_client.models.download("../../m", "x1", download_path=download)
    assert everything_under(tmp_path) == before and not (tmp_path / "a" / "m").exists()


# --------------------------------------------------------------------------- names Azure refuses

def written(ml_client, tmp_path) -> tuple[set[Path], dict[str, int]]:
    """Every file and folder under tmp_path (the root and what lies above it) and the catalog's row counts."""
    files = {p for p in tmp_path.rglob("*") if not p.name.endswith(("-journal", "-wal", "-shm"))}
    with closing(sqlite3.connect(ml_client._workspace.catalog.path)) as db:
        rows = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("assets", "resources", "jobs")}
    return files, rows


ASSET_RULE = "Azure ML allows letters, digits, '-', '_' and '.', starting with a letter or digit, at most 255 characters"


@pytest.mark.parametrize("name", ["../evil", "a/b", "my model", "d" * 300])
def test_a_data_asset_with_a_name_azure_refuses_is_refused_before_its_file_is_copied_in(ml_client, tmp_path, name):
    source = tmp_path / "greeting.txt"
    source.write_text("hello")
    before = written(ml_client, tmp_path)
    with pytest.raises(LocalMLValidationError) as refused:
        ml_client.data.create_or_update(Data(name=name, path=str(source), type="uri_file"))
    assert str(refused.value).startswith("Data asset name") and ASSET_RULE in str(refused.value)
    assert written(ml_client, tmp_path) == before


@pytest.mark.parametrize("name", ["my model", "../../m", "m" * 300])
def test_a_model_with_a_name_azure_refuses_is_refused_before_its_files_are_copied_in(ml_client, tmp_path, name):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    before = written(ml_client, tmp_path)
    with pytest.raises(LocalMLValidationError) as refused:
        ml_client.models.create_or_update(Model(name=name, path=str(folder), type="custom_model"))
    assert str(refused.value).startswith("Model name") and ASSET_RULE in str(refused.value)
    assert written(ml_client, tmp_path) == before


def test_an_environment_with_a_name_azure_refuses_is_not_stored(ml_client, tmp_path):
    before = written(ml_client, tmp_path)
    with pytest.raises(LocalMLValidationError, match="Environment name 'my env' is not valid: it contains ' '"):
        ml_client.environments.create_or_update(Environment(name="my env", conda_file={"dependencies": ["pip"]}))
    assert written(ml_client, tmp_path) == before


@pytest.mark.parametrize("name", ["bad name!", "c" * 17, "1cluster"])
def test_a_compute_with_a_name_azure_refuses_is_not_created(ml_client, tmp_path, name):
    before = written(ml_client, tmp_path)
    with pytest.raises(LocalMLValidationError) as refused:
        ml_client.compute.begin_create_or_update(AmlCompute(name=name, max_instances=1))
    assert "letters, digits and hyphens, starting with a letter, not ending with a hyphen, 2 to 16 characters" in str(refused.value)
    assert written(ml_client, tmp_path) == before


@pytest.mark.parametrize("name", ["../evil", "my-store", "a/b", "s" * 300])
def test_a_datastore_with_a_name_azure_refuses_is_not_created(ml_client, tmp_path, name):
    before = written(ml_client, tmp_path)
    with pytest.raises(LocalMLValidationError) as refused:
        ml_client.datastores.create_or_update(AzureBlobDatastore(name=name, account_name="acct", container_name="c"))
    assert str(refused.value).startswith("Datastore name") and "letters, digits and '_', at most 255 characters" in str(refused.value)
    assert written(ml_client, tmp_path) == before


@pytest.mark.parametrize("experiment", ["../../x", "../../../escape-exp", "e" * 300])
def test_a_job_whose_experiment_name_azure_refuses_is_refused_before_anything_is_made(ml_client, code_dir, tmp_path, experiment):
    before = written(ml_client, tmp_path)
    job = command(code=str(code_dir), command="python seen.py", environment=ENV)
    with pytest.raises(LocalMLValidationError) as refused:
        ml_client.jobs.create_or_update(job, experiment_name=experiment)
    assert str(refused.value).startswith("Experiment name")
    assert "letters, digits, '_' and '-', starting with a letter or digit, at most 255 characters" in str(refused.value)
    assert written(ml_client, tmp_path) == before  # no job row, no code snapshot, no MLflow experiment folder
    assert not Path(os.path.normpath(ml_client._workspace.root / "mlartifacts" / experiment)).exists()


def test_a_job_without_an_experiment_is_named_after_the_folder_in_a_form_azure_accepts(ml_client, code_dir, tmp_path, monkeypatch):
    folder = tmp_path / ".my project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    job = ml_client.jobs.create_or_update(command(code=str(code_dir), command="python seen.py", environment=ENV))
    assert job.experiment_name == "my_project"
