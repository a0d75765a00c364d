"""One source of defaults: what the Prefect UI's form shows unedited (the deployment's parameter schema), what
``amlflows run <flow>`` runs with, and what the flow called from Python runs with are the same parameters."""

from __future__ import annotations

import inspect
import re
import time

import pytest
from prefect.utilities.callables import parameter_schema

from amlflows.cli import FLOWS, ParameterError, build_parser, flow_parameters, main
from flows.parameters import NAME_FIELDS
from tests.conftest import REPO

#: Markdown in the UI drops anything that looks like an HTML tag, such as ``azureml:<name>:<version>``.
HTML_TAG = re.compile(r"<[A-Za-z/]")


def command_line_parameters(name: str, *argv: str):
    options = vars(build_parser().parse_args(["run", name, *argv]))
    return flow_parameters(name, {k: v for k, v in options.items() if not k.startswith("_")})


def schema_properties(schema: dict):
    """Every property of the schema and of the models it refers to, with its model's name."""
    yield from (("params", name, prop) for name, prop in schema["properties"].items())
    for model, definition in schema.get("definitions", {}).items():
        yield from ((model, name, prop) for name, prop in definition.get("properties", {}).items())


@pytest.mark.parametrize("name", list(FLOWS))
def test_the_form_the_command_line_and_the_python_call_run_with_the_same_defaults(name, monkeypatch):
    monkeypatch.chdir(REPO)  # the defaults name the bundled sample by its relative path
    flow_function, model = FLOWS[name]
    schema = parameter_schema(flow_function).model_dump()  # what `prefect deploy` stores and the form renders
    params = schema["properties"]["params"]
    assert "anyOf" not in params and "params" not in schema.get("required", []), "the form would open on a None toggle"
    form = params["default"]
    assert set(form) == set(model.model_fields), "every field shows a value in the form"

    python = inspect.signature(flow_function.fn).parameters["params"].default.validated()
    command_line = command_line_parameters(name)
    submitted = model.model_validate(form)  # the form's values, as the flow run receives them
    assert submitted.model_dump(mode="json") == command_line.model_dump(mode="json") == python.model_dump(mode="json")


@pytest.mark.parametrize("name", list(FLOWS))
def test_every_field_in_the_form_says_what_it_is_and_no_placeholder_is_lost(name):
    flow_function, _ = FLOWS[name]
    for model, field, prop in schema_properties(parameter_schema(flow_function).model_dump()):
        if model == "params":
            continue
        description = prop.get("description", "")
        assert description, f"{model}.{field} has no description"
        assert not HTML_TAG.search(description), f"{model}.{field}: {description!r} loses its <...> in the UI"


@pytest.mark.parametrize("name", list(FLOWS))
def test_the_help_of_every_option_shows_its_description_and_default(name, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", name, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    _, model = FLOWS[name]
    for field_name, field in model.model_fields.items():
        assert " ".join(field.description.split()) in help_text, field_name
    assert help_text.count("(default: ") == len(model.model_fields)
    assert not HTML_TAG.search(help_text)


def test_a_scorecard_given_in_part_keeps_the_other_thresholds_of_the_gate():
    params = command_line_parameters("rai_review", "--thresholds", '{"max_fairness_gap": null}')
    assert params.thresholds.max_fairness_gap is None
    assert params.thresholds.primary_metric_threshold == 0.85 and params.thresholds.max_worst_cohort_error_rate == 0.5



#: A name Azure refuses for each name-like field, and how the refusal starts.
BAD_NAMES = {
    "data_name": ("../evil", "Data asset name '../evil' is not valid"),
    "model_name": ("my model", "Model name 'my model' is not valid"),
    "experiment_name": ("x" * 300, "Experiment name '" + "x" * 40 + "...' is not valid: it has 300 characters"),
    "compute": ("bad name!", "Compute name 'bad name!' is not valid"),
    "endpoint_name": ("1-endpoint", "{kind} endpoint name '1-endpoint' is not valid"),
    "deployment_name": ("blue_1", "Deployment name 'blue_1' is not valid"),
    "predictions_name": ("../evil", "Data asset name '../evil' is not valid"),
}
#: The kind of endpoint a flow's endpoint_name names.
ENDPOINT_KINDS = {"batch_score": "Batch"}
NAMED = [(flow, field) for flow, (_, model) in FLOWS.items() for field in NAME_FIELDS if field in model.model_fields]


def test_every_name_like_field_of_every_flow_has_a_bad_example_here():
    assert set(BAD_NAMES) == set(NAME_FIELDS) and {field for _, field in NAMED} == set(NAME_FIELDS)


@pytest.mark.parametrize("flow, field", NAMED)
def test_a_name_azure_refuses_fails_in_the_parameter_model_in_under_a_second_with_the_rule(flow, field):
    bad, refusal = BAD_NAMES[field]
    refusal = refusal.format(kind=ENDPOINT_KINDS.get(flow, "Online"))
    started = time.perf_counter()
    with pytest.raises(ParameterError) as refused:
        command_line_parameters(flow, f"--{field.replace('_', '-')}", bad)
    assert time.perf_counter() - started < 1.0
    assert f"  - {field}: {refusal}" in str(refused.value) and "Azure ML allows" in str(refused.value)


def test_the_command_line_refuses_a_bad_experiment_name_before_the_flow_starts_without_a_traceback(capsys):
    assert main(["run", "train", "--experiment-name", "../../../escape-exp"]) == 2
    err = capsys.readouterr().err
    assert "experiment_name: Experiment name '../../../escape-exp' is not valid: it starts with '.'" in err
    assert "Traceback" not in err and "train finished" not in err


#: Every field that names a registered asset, a reference in a form Azure has no use for, and how the refusal starts.
BAD_REFERENCES = [
    ("rai_review", "model", "diabetes-baseline", "'diabetes-baseline' is not a model reference: use azureml:<name>:<version>"),
    ("monitor", "model", "azureml:diabetes-baseline", "'azureml:diabetes-baseline' is not a model reference"),
    ("monitor", "data", "diabetes:2", "'diabetes:2' is not a data asset reference: use azureml:<name>:<version>"),
    ("monitor", "reference_data", "azureml:diabetes", "'azureml:diabetes' is not a data asset reference"),
    ("retrain", "data", "azureml:diabetes@", "'azureml:diabetes@' is not a data asset reference"),
    ("refine", "baseline", "azureml:diabetes-baseline", "'azureml:diabetes-baseline' is not a model reference"),
    ("batch_score", "model", "diabetes-baseline", "'diabetes-baseline' is not a model reference: use azureml:<name>:<version>"),
    ("batch_score", "data", "azureml:patient-data", "'azureml:patient-data' is not a data asset reference"),
]


@pytest.mark.parametrize("flow, field, bad, refusal", BAD_REFERENCES, ids=[f"{f}-{field}" for f, field, *_ in BAD_REFERENCES])
def test_a_reference_in_the_wrong_form_fails_in_the_parameter_model_in_under_a_second_with_the_forms(flow, field, bad, refusal):
    started = time.perf_counter()
    with pytest.raises(ParameterError) as refused:
        command_line_parameters(flow, f"--{field.replace('_', '-')}", bad)
    assert time.perf_counter() - started < 1.0
    assert refusal in str(refused.value)


def test_the_command_line_refuses_a_model_reference_without_a_version_before_the_flow_starts(capsys):
    assert main(["run", "rai_review", "--model", "azureml:diabetes-baseline"]) == 2
    err = capsys.readouterr().err
    assert "model: 'azureml:diabetes-baseline' is not a model reference" in err and "@champion" in err
    assert "Traceback" not in err and "Beginning flow run" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "--search-space", 'learning_rate={"type": "choice", "values": []}'], "search_space parameter 'learning_rate' (choice) has no values"),
        (["tune", "--search-space", 'learning_rate={"type": choice}'], "the value of learning_rate is not valid JSON"),
        (["rai_review", "--thresholds", "{bad"], "'{bad' is not valid JSON (Expecting property name"),
        (["rai_review", "--thresholds", "[0.9]"], "expected a JSON object such as '{\"primary_metric\": \"AUC_weighted\""),
        (["tune", "--early-termination", "{x"], "write a JSON object such as '{\"type\": \"bandit\""),
    ],
    ids=["empty-choice", "malformed-range", "malformed-thresholds", "thresholds-not-an-object", "malformed-policy"],
)
def test_a_malformed_option_is_refused_at_the_command_line_with_what_to_write(argv, message, capsys):
    try:
        code = main(["run", *argv])
    except SystemExit as exit:  # argparse's own refusal
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert "got 'value'" not in err
    if argv[1] == "--thresholds":  # the thresholds' own form, not another setting's
        assert "bandit" not in err
