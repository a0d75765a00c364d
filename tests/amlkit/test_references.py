"""Azure ML's asset references as amlkit reads them."""

import pytest

from amlkit.errors import SpecError
from amlkit.references import (
    AssetReference,
    JobArtifactPath,
    is_local_path,
    logged_model_id,
    parse_asset_reference,
    parse_run_artifact,
)


@pytest.mark.parametrize(
    "text, reference",
    [
        ("azureml:diabetes:2", AssetReference("diabetes", version="2")),
        ("azureml:diabetes@latest", AssetReference("diabetes", label="latest")),
        ("azureml:azureml:1", AssetReference("azureml", version="1")),
    ],
)
def test_a_reference_names_its_asset_and_its_version_or_label(text, reference):
    assert parse_asset_reference(text) == reference


@pytest.mark.parametrize("text", ["azureml:diabetes", "azureml:diabetes@", "diabetes:2", "azureml://datastores/x/paths/y"])
def test_a_name_without_a_version_or_label_is_not_a_reference_though_the_prefix_looks_like_a_name(text):
    # "azureml:diabetes" was once read as version "diabetes" of an asset named "azureml"
    assert parse_asset_reference(text) is None


def test_without_the_prefix_required_a_bare_name_and_version_is_a_reference():
    assert parse_asset_reference("diabetes:2", require_prefix=False) == AssetReference("diabetes", version="2")
    assert parse_asset_reference("azureml:diabetes", require_prefix=False) is None


@pytest.mark.parametrize(
    "uri, artifact",
    [
        ("runs:/abc/model", JobArtifactPath("abc", "model")),
        ("runs:/abc/model/", JobArtifactPath("abc", "model")),
        ("runs:/abc", JobArtifactPath("abc", "")),
        ("azureml://jobs/job_1/outputs/artifacts/paths/model/", JobArtifactPath("job_1", "model")),
        ("azureml://jobs/job_1/outputs/out", None),
        ("models:/m-1", None),
    ],
)
def test_a_runs_uri_and_a_jobs_artifact_uri_both_name_a_run_and_a_path_in_it(uri, artifact):
    assert parse_run_artifact(uri) == artifact


def test_a_models_uri_gives_its_logged_model_id_and_a_registered_versions_uri_says_what_to_write_instead():
    assert logged_model_id("models:/m-0a1b") == "m-0a1b"
    with pytest.raises(SpecError, match="azureml:<name>:<version>"):
        logged_model_id("models:/clf/3")


@pytest.mark.parametrize("value, local", [("data/x.csv", True), ("runs:/r/m", False), ("models:/m-1", False), ("azureml:d:1", False)])
def test_only_a_path_on_this_machine_is_local(value, local):
    assert is_local_path(value) is local
