"""Azure ML's asset references as amlkit reads them."""

import pytest

from amlkit.references import AssetReference, parse_asset_reference


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
