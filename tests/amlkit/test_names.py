"""Azure ML's naming rules: the names Azure accepts pass, the ones it refuses fail with the rule in the message."""

import pytest

from amlkit import names
from amlkit.errors import SpecError


@pytest.mark.parametrize("rule", [names.DATA, names.MODEL, names.ENVIRONMENT, names.COMPONENT])
@pytest.mark.parametrize("name", ["diabetes", "diabetes-csv", "AzureML-sklearn-1.5", "rai_tabular_insight_constructor", "v2.model", "7days", "a" * 255])
def test_an_asset_name_of_letters_digits_dashes_underscores_and_dots_is_accepted(rule, name):
    assert rule.check(name) == name


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../evil", "it starts with '.'"),
        ("a/b", "it contains '/'"),
        ("my model", "it contains ' '"),
        ("a" * 300, "it has 300 characters"),
        ("-dash", "it starts with '-'"),
        ("", "a name is required"),
        (None, "a name is required"),
    ],
)
def test_an_asset_name_azure_refuses_fails_naming_what_is_wrong_and_the_rule(name, problem):
    with pytest.raises(SpecError) as refused:
        names.DATA.check(name)
    message = str(refused.value)
    assert message.startswith("Data asset name") and problem in message
    assert "letters, digits, '-', '_' and '.', starting with a letter or digit, at most 255 characters" in message


def test_a_long_name_is_quoted_shortened_in_the_message():
    with pytest.raises(SpecError) as refused:
        names.MODEL.check("m" * 300)
    assert "m" * 41 not in str(refused.value) and "'" + "m" * 40 + "...'" in str(refused.value)


@pytest.mark.parametrize("name", ["cpu-cluster", "ab", "a" * 16, "gpu2", "local"])
def test_a_compute_name_of_2_to_16_letters_digits_and_hyphens_starting_with_a_letter_is_accepted(name):
    assert names.COMPUTE.check(name) == name


@pytest.mark.parametrize(
    "name, problem",
    [
        ("bad name!", "it contains ' ', '!'"),
        ("a", "it has 1 character"),
        ("a" * 17, "it has 17 characters"),
        ("1cluster", "it starts with '1'"),
        ("cluster-", "it ends with a hyphen"),
        ("cpu_cluster", "it contains '_'"),
    ],
)
def test_a_compute_name_azure_refuses_fails_with_the_amlcompute_rule(name, problem):
    with pytest.raises(SpecError) as refused:
        names.COMPUTE.check(name)
    assert problem in str(refused.value)
    assert "letters, digits and hyphens, starting with a letter, not ending with a hyphen, 2 to 16 characters" in str(refused.value)


@pytest.mark.parametrize("name", ["diabetes-training", "Default", "exp_1", "a" * 255])
def test_an_experiment_name_of_letters_digits_underscores_and_dashes_is_accepted(name):
    assert names.EXPERIMENT.check(name) == name


@pytest.mark.parametrize(
    "name, problem",
    [("../../x", "it starts with '.'"), ("a" * 300, "it has 300 characters"), ("x/../../y", "it contains '.', '/'")],
)
def test_an_experiment_name_that_could_name_a_folder_elsewhere_is_refused(name, problem):
    with pytest.raises(SpecError) as refused:
        names.EXPERIMENT.check(name)
    assert str(refused.value).startswith("Experiment name") and problem in str(refused.value)


def test_no_rule_accepts_a_name_that_climbs_out_of_a_folder():
    for rule in (names.DATA, names.MODEL, names.ENVIRONMENT, names.COMPONENT, names.COMPUTE, names.EXPERIMENT, names.JOB,
                 names.ENDPOINT, names.DEPLOYMENT):
        for name in ("..", ".", "../x", "a/../b", "a\\b"):
            assert rule.problem(name) is not None, (rule.kind, name)


@pytest.mark.parametrize("name", ["diabetes-ep", "blue", "ep1", "a" * 32, "ab", "a" * 33, "1ep", "ep-", "ep_1", "ep.1"])
def test_the_endpoint_and_deployment_rules_accept_exactly_what_the_sdk_accepts(name):
    from azure.ai.ml.entities._endpoint._endpoint_helpers import validate_endpoint_or_deployment_name
    from azure.ai.ml.exceptions import ValidationException

    try:
        validate_endpoint_or_deployment_name(name)
        sdk_accepts = True
    except ValidationException:
        sdk_accepts = False
    assert (names.ENDPOINT.problem(name) is None) == sdk_accepts
    assert (names.DEPLOYMENT.problem(name) is None) == sdk_accepts
