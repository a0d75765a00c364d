"""Azure's Responsible AI pipeline, written as for Azure (components from the ``azureml`` registry client,
``dsl.pipeline``), runs on localml: constructor, insights side by side, gather, dashboard. (The rai_review
flow's tests run all four insights, in a pipeline built from Azure's YAML form.)"""

from __future__ import annotations

import json

import pytest
from azure.ai.ml import Input, dsl
from azure.ai.ml.entities import Data, Model

from localml import LocalMLClient
from tests.amlkit.test_rai_insights import RAI_DATA, TARGET, save_model

VERSION = "0.22.0"
PIPELINE_TIMEOUT = 600.0


def rai_pipeline(registry: LocalMLClient, model: Model):
    get = lambda name: registry.components.get(name, version=VERSION)  # noqa: E731
    constructor, erroranalysis = get("rai_tabular_insight_constructor"), get("rai_tabular_erroranalysis")
    counterfactual, gather = get("rai_tabular_counterfactual"), get("rai_tabular_insight_gather")

    @dsl.pipeline(compute="local", experiment_name="rai-review")
    def review(target_column_name, train_data, test_data):
        create = constructor(
            title="Diabetes classifier", task_type="classification", model_info=f"{model.name}:{model.version}",
            model_input=Input(type="mlflow_model", path=f"azureml:{model.name}:{model.version}"),
            train_dataset=train_data, test_dataset=test_data, target_column_name=target_column_name,
            maximum_rows_for_test_dataset=500, feature_metadata=json.dumps({"cohort_features": {"Age": [0, 30, 50, 120]}}),
        )
        dashboard = create.outputs.rai_insights_dashboard
        errors = erroranalysis(rai_insights_dashboard=dashboard, max_depth=3)
        alternatives = counterfactual(rai_insights_dashboard=dashboard, total_CFs=2, desired_class="opposite")
        gathered = gather(constructor=dashboard, insight_1=errors.outputs.error_analysis, insight_2=alternatives.outputs.counterfactual)
        return {"dashboard": gathered.outputs.dashboard}

    return review


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from lightgbm import LGBMClassifier
    import pandas as pd

    root = tmp_path_factory.mktemp("rai-pipeline") / "ws"
    ml_client = LocalMLClient(root)
    train = pd.read_csv(RAI_DATA / "train" / "diabetes.csv")
    X = train.drop(columns=TARGET)
    path = save_model(LGBMClassifier(n_estimators=40, verbose=-1).fit(X, train[TARGET]), X, root.parent / "model")
    model = ml_client.models.create_or_update(Model(name="diabetes-clf", type="mlflow_model", path=path))
    data = {
        split: ml_client.data.create_or_update(Data(name=f"diabetes-rai-{split}", type="mltable", path=str(RAI_DATA / split)))
        for split in ("train", "test")
    }
    inputs = {f"{split}_data": Input(type="mltable", path=f"azureml:{d.name}:{d.version}") for split, d in data.items()}
    return ml_client, LocalMLClient(root, registry_name="azureml"), model, inputs


def wait(ml_client, name: str) -> str:
    import time

    deadline = time.monotonic() + PIPELINE_TIMEOUT
    while (status := ml_client.jobs.get(name).status) not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, f"pipeline {name} still {status}"
        time.sleep(1)
    return status


@pytest.mark.slow
def test_an_azure_style_dsl_rai_pipeline_runs_and_gathers_its_insights(workspace, tmp_path):
    ml_client, registry, model, inputs = workspace
    job = ml_client.jobs.create_or_update(rai_pipeline(registry, model)(target_column_name=TARGET, **inputs))
    assert wait(ml_client, job.name) == "Completed", ml_client.jobs.get(job.name).properties.get("localml.error")

    nodes = {j.display_name: j.status for j in ml_client.jobs.list(parent_job_name=job.name)}
    assert nodes == dict.fromkeys(["create", "errors", "alternatives", "gathered"], "Completed")
    ml_client.jobs.download(job.name, download_path=tmp_path, output_name="dashboard")
    folder = tmp_path / "named-outputs" / "dashboard"
    insights = json.loads((folder / "rai_insights.json").read_text())
    assert set(insights) == {"overview", "error_analysis", "counterfactual", "fairness"}
    assert insights["overview"]["rows"] == 500 and insights["overview"]["metrics"]["AUC_weighted"] > 0.9
    assert len(insights["counterfactual"]["rows"]) == 5 and insights["error_analysis"]["worst_cohort"]["rows"] > 0
    assert sorted(insights["fairness"]["cohorts"]) == ["(0, 30]", "(30, 50]", "(50, 120]"]
    page = (folder / "dashboard.html").read_text()
    assert all(f"id='{section}'" in page for section in ("overview", "error-analysis", "counterfactuals", "fairness"))
