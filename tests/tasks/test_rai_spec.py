"""The review pipeline as the rai_review flow builds it for Azure: checked offline with the SDK's own
validation and REST conversion (Azure is unreachable here), and against the components localml serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.rai_review import RAIReviewParameters
from tasks.jobs import InputSpec
from tasks.rai import RAIReviewSpec

COMPONENTS = Path(__file__).resolve().parents[2] / "localml" / "rai" / "components"
TRAIN = InputSpec(type="mltable", path="azureml:diabetes-rai-train:1")
TEST = InputSpec(type="mltable", path="azureml:diabetes-rai-test:1")
AZURE_COMPONENTS = {
    "create": "rai_tabular_insight_constructor", "explanation": "rai_tabular_explanation",
    "error_analysis": "rai_tabular_erroranalysis", "counterfactual": "rai_tabular_counterfactual",
    "causal": "rai_tabular_causal", "gather": "rai_tabular_insight_gather",
}


def azure_spec(**overrides) -> RAIReviewSpec:
    return RAIReviewParameters(compute="cpu-cluster", **overrides).spec(TRAIN, TEST, "azureml:diabetes-baseline:3", local=False)


def test_the_azure_pipeline_passes_the_sdk_validation_with_registry_components_of_one_version():
    job = azure_spec().to_job(name="rai-review-1")
    result = job._validate()
    assert result.passed, result.error_messages
    rest = job._to_rest_object().properties
    assert rest.job_type == "Pipeline" and rest.compute_id.endswith("cpu-cluster")
    assert {name: node["componentId"] for name, node in rest.jobs.items()} == {
        name: f"azureml://registries/azureml/components/{component}/versions/0.22.0" for name, component in AZURE_COMPONENTS.items()
    }
    create = rest.jobs["create"]["inputs"]
    # (the SDK's YAML loader drops the azureml: of asset references; the client resolves them at submission)
    assert create["model_input"]["uri"].removeprefix("azureml:") == "diabetes-baseline:3"
    assert create["model_input"]["job_input_type"] == "mlflow_model"
    assert create["model_info"]["value"] == "diabetes-baseline:3"
    assert create["train_dataset"]["value"] == "${{parent.inputs.train_data}}"
    assert {rest.inputs[k].uri.removeprefix("azureml:") for k in ("train_data", "test_data")} == {"diabetes-rai-train:1", "diabetes-rai-test:1"}
    # Azure's constructor knows no cohort features: localml's fairness extension stays out of an Azure pipeline
    assert json.loads(create["feature_metadata"]["value"]) == {}
    gather = rest.jobs["gather"]["inputs"]
    assert [gather[f"insight_{n}"]["value"] for n in range(1, 5)] == [
        "${{parent.jobs.explanation.outputs.explanation}}", "${{parent.jobs.error_analysis.outputs.error_analysis}}",
        "${{parent.jobs.counterfactual.outputs.counterfactual}}", "${{parent.jobs.causal.outputs.causal}}",
    ]
    assert json.loads(rest.jobs["causal"]["inputs"]["treatment_features"]["value"]) == ["BMI"]
    assert set(rest.outputs) == {"dashboard", "ux_json"}


def test_the_local_pipeline_adds_the_cohorts_and_every_input_is_one_the_components_declare():
    spec = RAIReviewParameters(categorical_features=["Pregnancies"]).spec(TRAIN, TEST, "azureml:diabetes-baseline:3", local=True)
    pipeline = spec.pipeline_yaml()
    metadata = json.loads(pipeline["jobs"]["create"]["inputs"]["feature_metadata"])
    assert metadata == {"categorical_features": ["Pregnancies"], "cohort_features": {"Age": [0, 30, 50, 120]}}
    for name, node in pipeline["jobs"].items():
        component = yaml.safe_load((COMPONENTS / f"{AZURE_COMPONENTS[name]}.yml").read_text())
        assert set(node["inputs"]) <= set(component["inputs"]), name
        assert set(node.get("outputs", {})) <= set(component["outputs"]), name
        assert node["component"].endswith(f"/components/{component['name']}/versions/{component['version']}")


def test_a_review_of_some_insights_gathers_only_those():
    pipeline = azure_spec(insights=["error_analysis"], treatment_features=[]).pipeline_yaml()
    assert list(pipeline["jobs"]) == ["create", "error_analysis", "gather"]
    assert pipeline["jobs"]["gather"]["inputs"] == {
        "constructor": "${{parent.jobs.create.outputs.rai_insights_dashboard}}",
        "insight_1": "${{parent.jobs.error_analysis.outputs.error_analysis}}",
    }


@pytest.mark.parametrize("changes, message", [
    ({"model": "azureml:diabetes-baseline@latest"}, "must be azureml:<name>:<version>"),
    ({"treatment_features": []}, "causal analysis needs treatment_features"),
    ({"task_type": "regression"}, "Regression counterfactuals need desired_range"),
    ({"insights": ["causal", "causal"]}, "insights lists one twice"),
])
def test_a_spec_that_cannot_run_is_refused_when_built(changes, message):
    values = dict(model="azureml:diabetes-baseline:3", train_data=TRAIN, test_data=TEST, target_column="Diabetic", treatment_features=["BMI"])
    with pytest.raises(ValidationError, match=message):
        RAIReviewSpec(**{**values, **changes})
