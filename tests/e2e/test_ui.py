"""Each deployment's run form in the Prefect UI (the one a browser opens by default), as a person uses it:
opened in headless Chromium, submitted unedited, and run by the worker of `amlflows up`. The run gets exactly
the flow's defaults, plus the small budgets this test sets on the deployments (as a team would in
prefect.yaml); bad input typed into a form is refused, naming the field."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from amlflows.cli import FLOWS
from tests.amlkit.test_rai_insights import RAI_DATA, TARGET, save_model
from tests.e2e.conftest import delete_endpoints, prefect_client, wait_for_final_state
from tests.flows.test_deploy import Client as TrafficClient
from tests.flows.test_deploy import model_folder  # noqa: F401 (a fixture)
from tests.flows.test_deploy import params as deploy_params

pytestmark = pytest.mark.e2e

#: Set on the deployments by the test: small budgets, and output folders of the test's own instead of the
#: repository's. Every other value is the flow's default, shown by the form and submitted unedited.
BUDGETS = {
    "baseline": {"max_trials": 2, "allowed_algorithms": ["LightGBM"], "timeout_minutes": 1},
    "train": {},
    "tune": {"max_total_trials": 2},
    "refine": {"code_folder": "{tmp}/generated_code"},
    "monitor": {},
    "retrain": {"max_trials": 2, "allowed_algorithms": ["LightGBM"], "timeout_minutes": 1, "insights": ["error_analysis"]},
    "rai_review": {"output_folder": "{tmp}/rai_reviews"},
    # the version retrain's form run registered, on an endpoint of its own (a promotion's trigger deploys to the default)
    "deploy": {"model": "azureml:diabetes-baseline@latest", "endpoint_name": "form-ep"},
    # the same version (a review that fails leaves no champion to score with)
    "batch_score": {"model": "azureml:diabetes-baseline@latest", "output_folder": "{tmp}/batch_predictions"},
}
#: Minutes each run may take on a busy 2-core machine.
RUN_MINUTES = {"baseline": 4, "train": 2, "tune": 4, "refine": 3, "monitor": 2, "retrain": 6, "rai_review": 5, "deploy": 3,
               "batch_score": 3}


@pytest.fixture(scope="module")
def budgets(stack, tmp_path_factory):
    """The deployments with the test's budgets; the parameters each run is expected to get."""
    from prefect.client.schemas.actions import DeploymentUpdate

    tmp = tmp_path_factory.mktemp("outputs")
    values = {name: {k: v.format(tmp=tmp) if isinstance(v, str) else v for k, v in budget.items()} for name, budget in BUDGETS.items()}
    with prefect_client(stack) as client:
        for name, budget in values.items():
            deployment = client.read_deployment_by_name(f"{name}/{name}")
            client.update_deployment(deployment.id, DeploymentUpdate(parameters={"params": budget}))
    return values


def open_run_form(page, stack, name: str) -> None:
    with prefect_client(stack) as client:
        deployment = client.read_deployment_by_name(f"{name}/{name}")
    page.goto(f"http://127.0.0.1:{stack.prefect_port}/v2/deployments/deployment/{deployment.id}/run")
    page.get_by_label("Run Name").wait_for()
    page.get_by_text("Workspace (Optional)").wait_for()  # the parameters' fields are showing


def submit(page, stack):
    """Submit the open form, once, as a person does; the flow run it created.

    Once only: Prefect's own server on SQLite used to answer 503 here now and then (its database locked by
    another writer) and a person had to click again; the stack's server takes SQLite's write lock up front
    (amlflows/prefect_server.py), so one click must do."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    run_name = page.get_by_label("Run Name").input_value()
    page.get_by_role("button", name="Submit").click()
    try:
        page.wait_for_url(lambda url: not url.endswith("/run"), timeout=30_000, wait_until="commit")  # the app routes itself
    except Exception:
        pytest.fail(f"the form was not submitted; API calls that failed: {page.api_problems}; the page says:\n{page.inner_text('body')[-1500:]}")
    with prefect_client(stack) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))
    return run


def runs_of(stack, name: str) -> int:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with prefect_client(stack) as client:
        return len(client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))))


def run_to_completion(page, stack, name: str):
    open_run_form(page, stack, name)
    run = submit(page, stack)
    with prefect_client(stack) as client:
        run = wait_for_final_state(client, run.id, RUN_MINUTES[name] * 60, stack)
    assert run.state.is_completed(), f"{name}: {run.state.name}: {run.state.message}"
    return run


def test_the_prefect_ui_opens_on_the_form_a_person_sees_by_default(stack, page):
    page.goto(f"http://127.0.0.1:{stack.prefect_port}/")
    page.wait_for_url("**/v2/**")


@pytest.mark.parametrize("name", ["baseline", "train", "tune", "refine", "monitor", "retrain", "deploy", "batch_score"])
def test_a_form_submitted_unedited_runs_the_flow_s_defaults_on_the_worker(stack, budgets, page, name):
    run = run_to_completion(page, stack, name)
    _, model = FLOWS[name]
    submitted = run.parameters["params"]
    assert set(submitted) == set(model.model_fields), "the form sends every field"
    assert model.model_validate(submitted).model_dump(mode="json") == model(**budgets[name]).model_dump(mode="json")
    if name == "batch_score":
        assert_predictions_registered(stack, run)


def assert_predictions_registered(stack, run):
    """The run's predictions: a data version of the default name, made by the run's job, 400 rows of the sample."""
    from localml import LocalMLClient

    client = LocalMLClient(stack.localml_root)
    (version,) = [d for d in client.data.list(name="diabetes-predictions")]
    assert version.tags["batch.job"] and version.tags["model"].startswith("azureml:diabetes-baseline:")
    predictions = client.data.to_dataframe(f"azureml:diabetes-predictions:{version.version}")
    assert len(predictions) == 400 and set(predictions["prediction"].astype(str)) <= {"0", "1"}, predictions.head()


@pytest.fixture
def weak_model(stack):
    """A model that only looks at Pregnancies and Age, registered as the newest diabetes-baseline version."""
    from azure.ai.ml.entities import Model
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from localml import LocalMLClient

    train = pd.read_csv(RAI_DATA / "train" / "diabetes.csv")
    features = train.drop(columns=TARGET)
    weak = make_pipeline(ColumnTransformer([("few", "passthrough", ["Pregnancies", "Age"])]), LogisticRegression())
    folder = save_model(weak.fit(features, train[TARGET]), features, stack.state / "weak-model")
    client = LocalMLClient(stack.localml_root)
    model = client.models.create_or_update(Model(name="diabetes-baseline", path=folder, type="mlflow_model", tags={"data": "azureml:diabetes:1"}))
    return client, model


def test_rai_review_from_the_form_unedited_fails_a_weak_model_on_the_real_gate(stack, budgets, page, weak_model):
    client, model = weak_model
    run = run_to_completion(page, stack, "rai_review")
    thresholds = run.parameters["params"]["thresholds"]
    assert thresholds == {"primary_metric": "AUC_weighted", "primary_metric_threshold": 0.85, "max_worst_cohort_error_rate": 0.5,
                          "max_fairness_gap": 0.15, "fairness_metric": "accuracy", "min_cohort_share": 0.05}
    tags = client.models.get(model.name, version=model.version).tags
    assert tags["rai_review"] == "failed", tags
    assert "AUC_weighted is" in tags["rai_review_reasons"] and "the threshold is >= 0.85" in tags["rai_review_reasons"]


def test_a_number_below_its_minimum_is_refused_at_its_field(stack, budgets, page):
    before = runs_of(stack, "tune")
    open_run_form(page, stack, "tune")
    trials = page.get_by_label("Max Total Trials")
    trials.fill("0")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_timeout(1500)
    assert page.url.endswith("/run"), "the form stays open"
    assert "greater than or equal to 1" in trials.evaluate("input => input.validationMessage")
    assert runs_of(stack, "tune") == before


def test_a_search_space_of_the_wrong_shape_is_refused_naming_the_field(stack, budgets, page):
    before = runs_of(stack, "tune")
    open_run_form(page, stack, "tune")
    field = page.get_by_text("Search Space (Optional)").locator("xpath=ancestor::*[.//*[contains(@class, 'cm-content')]][1]")
    field.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text('{"learning_rate": 0.1}')
    page.get_by_role("button", name="Submit").click()
    page.get_by_text("Validation failed for field 'params.search_space.learning_rate'").wait_for()
    assert page.url.endswith("/run") and runs_of(stack, "tune") == before


def test_a_value_only_the_flow_can_check_fails_its_run_before_any_job_naming_the_problem(stack, budgets, page):
    from localml import LocalMLClient

    jobs = len(list(LocalMLClient(stack.localml_root).jobs.list()))
    open_run_form(page, stack, "train")
    page.get_by_label("Script").fill("examples/no_such_script.py")
    run = submit(page, stack)
    with prefect_client(stack) as client:
        run = wait_for_final_state(client, run.id, 120, stack)
    assert run.state.is_failed()
    assert "Training script 'examples/no_such_script.py' not found" in run.state.message
    assert len(list(LocalMLClient(stack.localml_root).jobs.list())) == jobs


APPROVAL_EP = "approval-ep"


@pytest.fixture
def approval_workspace(stack, model_folder):
    """Two versions of a small model in the stack's workspace, for an endpoint of this test's own (deleted afterwards)."""
    from azure.ai.ml.entities import Model

    from localml import LocalMLClient

    client = LocalMLClient(stack.localml_root)
    for version in ("1", "2"):
        client.models.create_or_update(Model(name="approval-model", version=version, path=str(model_folder), type="mlflow_model"))
    yield client
    delete_endpoints(stack.localml_root, [APPROVAL_EP])


def wait_until_paused(client, run_id, timeout: float, stack):
    deadline = time.monotonic() + timeout
    while not (run := client.read_flow_run(run_id)).state or not run.state.is_paused():
        if run.state is not None and run.state.is_final():
            pytest.fail(f"the rollout ended without pausing: {run.state.name}: {run.state.message}")
        if time.monotonic() > deadline:
            log = (stack.state / "worker.log").read_text()[-3000:]
            pytest.fail(f"flow run {run.name} is still {run.state.name if run.state else None}; worker log:\n{log}")
        time.sleep(1)
    return run


def test_a_rollout_that_needs_approval_pauses_and_a_person_approves_it_in_the_ui_with_the_figures_in_front_of_them(
        stack, page, approval_workspace):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    ml_client = approval_workspace
    first = deploy_params("azureml:approval-model:1", endpoint_name=APPROVAL_EP).model_dump(mode="json")
    second = deploy_params("azureml:approval-model:2", endpoint_name=APPROVAL_EP, require_approval=True,
                           approval_timeout_seconds=600).model_dump(mode="json")
    with prefect_client(stack) as client:
        deployment = client.read_deployment_by_name("deploy/deploy")
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"params": first})
        run = wait_for_final_state(client, run.id, RUN_MINUTES["deploy"] * 60, stack)
        assert run.state.is_completed(), f"the first deployment: {run.state.name}: {run.state.message}"
        traffic = TrafficClient(ml_client, APPROVAL_EP)
        traffic.start()
        try:
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"params": second})
            run = wait_until_paused(client, run.id, RUN_MINUTES["deploy"] * 60, stack)
            assert ml_client.online_endpoints.get(APPROVAL_EP).traffic == {"blue": 100, "green": 0}

            page.goto(f"http://127.0.0.1:{stack.prefect_port}/v2/runs/flow-run/{run.id}")
            dialog = page.get_by_role("dialog")
            try:
                page.get_by_role("button", name="Open menu").click()  # the run's menu: Resume is there while it is paused
                page.get_by_role("menuitem", name="Resume").click()
                dialog.get_by_text("Provide input to resume").wait_for(timeout=30_000)
                dialog.locator("table").wait_for(timeout=30_000)
            except Exception:
                pytest.fail(f"no resume form; API calls that failed: {page.api_problems}; the page says:\n{page.inner_text('body')[-1500:]}")
            rows = [[cell.strip() for cell in row.inner_text().split("\t")] for row in dialog.locator("table tr").all()]
            assert rows[0] == ["step", "deployment", "requests", "failure rate", "p95", "verdict"], rows
            assert [row[:2] for row in rows[1:]] == [["smoke test", "green (new)"], ["mirror 50%", "green (new)"],
                                                    ["mirror 50%", "blue (live)"]], rows
            assert rows[1][5] == "passed: 10 rows answered as the model predicts them", rows
            for row in rows[2:]:
                assert int(row[2]) >= 5 and row[3] == "0.00%" and 0 < float(row[4].removesuffix(" ms")) < 200, rows
            assert rows[2][5] == f"passed: {rows[2][2]} requests within the gate", rows
            assert "Approve: live traffic moves in steps of 50% -> 100%" in dialog.inner_text()

            assert dialog.get_by_role("switch").get_attribute("aria-checked") == "true", "approve is on as the form opens"
            dialog.get_by_role("textbox").fill("figures look fine")
            dialog.get_by_role("button", name="Resume").click()
            try:
                page.get_by_text("Flow run resumed").wait_for(timeout=30_000)
            except Exception:
                pytest.fail(f"not resumed; API calls that failed: {page.api_problems}; the page says:\n{page.inner_text('body')[-1500:]}")
            run = wait_for_final_state(client, run.id, RUN_MINUTES["deploy"] * 60, stack)
        finally:
            statuses = traffic.stop()
        assert run.state.is_completed(), f"{run.state.name}: {run.state.message}"
        (timeline,) = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                                                                          key=ArtifactFilterKey(any_=["rollout-timeline"])))
    assert "| approval |" in timeline.data and "approved: figures look fine" in timeline.data, timeline.data
    endpoint = ml_client.online_endpoints.get(APPROVAL_EP)
    assert endpoint.traffic == {"green": 100} and endpoint.tags["model.green"] == "azureml:approval-model:2"
    assert set(statuses) == {200}, statuses
