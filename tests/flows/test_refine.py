"""The refine flow end to end: AutoML's generated script, changed, retrained, compared and (maybe) registered.

All tests share the session's baseline workspace (one AutoML run); each refine job takes seconds.
"""

import base64
import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from pydantic import ValidationError

from flows.refine import MetricNotLoggedError, RefineParameters, refine
from tasks.jobs import JobFailedError
from tasks.workspace import tracking_client
from tests.flows.test_train import task_runs


def params(run, **overrides) -> RefineParameters:
    values = dict(baseline=run.result.model, compute="local", code_folder=str(run.generated))
    return RefineParameters(**{**values, **overrides})


def client():
    from tasks.workspace import get_client

    return get_client("local")


def edited_copy(run, tmp_path: Path, old: str, new: str) -> str:
    """A copy of the generated script with one edit, as a person would make it."""
    generated = run.generated / run.result.job_name / "script.py"
    if not generated.exists():
        refine(params(run))  # writes the generated script
    text = generated.read_text()
    assert old in text
    copy = tmp_path / "edited" / "script.py"
    copy.parent.mkdir()
    copy.write_text(text.replace(old, new))
    return str(copy)


def test_the_generated_script_reproduces_the_automl_model(baseline_workspace):
    result = refine(params(baseline_workspace, registration_rule="better"))
    # LightGBM without row sampling is deterministic: the same rows and options give the same model
    assert result.refined_score == pytest.approx(result.automl_score, abs=1e-6)
    assert result.automl_job == baseline_workspace.result.job_name
    assert not result.registered and "not registered" in result.decision and "better than" in result.decision

    generated = baseline_workspace.generated / result.automl_job
    assert sorted(p.name for p in generated.iterdir()) == ["conda_env.yml", "generated_from.json", "script.py"]
    assert "lightgbm==" in (generated / "conda_env.yml").read_text()
    assert client().jobs.get(result.job_name).status == "Completed"


def test_a_changed_hyperparameter_is_compared_reported_and_registered_and_a_rerun_trains_nothing(baseline_workspace):
    run = baseline_workspace
    # AutoML's short search kept a small model; many more trees do better on the held-out rows
    state = refine(params(run, hyperparameters={"n_estimators": 150}), return_state=True)
    result = state.result()
    assert result.refined_score > result.automl_score
    assert result.registered and result.model == "azureml:diabetes-refined:1"
    assert result.decision.startswith("registered: the rule asks for a model at least as good as the AutoML best")

    model = client().models.get("diabetes-refined", version="1")
    assert model.tags["compared_to"] == run.result.best_run and model.tags["automl_job"] == run.result.job_name
    assert model.tags["baseline"] == run.result.model
    assert float(model.tags["held_out_AUC_weighted"]) == pytest.approx(result.refined_score, abs=1e-4)
    assert json.loads(model.tags["changes"]) == {"n_estimators": 150}
    assert tracking_client("local").get_run(result.job_name).data.params["n_estimators"] == "150"

    summary = Artifact.get("refine-summary").data
    assert "| **AUC_weighted** |" in summary and result.job_name in summary and "`n_estimators` = 150" in summary
    table = Artifact.get("refine-comparison").data
    assert "AutoML best" in table and "refined" in table
    chart = Artifact.get("refine-comparison-chart").data
    assert base64.b64decode(chart.split(",", 1)[1]).startswith(b"\x89PNG")
    assert result.job_name in Artifact.get("refine-refined-run").data
    assert run.result.job_name in Artifact.get("refine-automl-run").data

    again = refine(params(run, hyperparameters={"n_estimators": 150}), return_state=True)
    assert again.result().reused and again.result().job_name == result.job_name
    runs = task_runs(again)
    assert runs["wait_for_job"].state.name == "Cached" and runs["register_model"].state.name == "Cached"
    assert client().models.get("diabetes-refined", label="latest").version == "1"


def test_an_edited_script_runs_as_edited(baseline_workspace, tmp_path):
    script = edited_copy(baseline_workspace, tmp_path, "    return Pipeline([", "    print('my edit', flush=True)\n    return Pipeline([")
    result = refine(params(baseline_workspace, script=script, registration_rule="always", model_name="diabetes-edited"))
    assert result.script == script and result.registered
    log = client()._workspace.job_dir(result.job_name) / "user_logs" / "std_log.txt"
    assert "my edit" in log.read_text()


def test_a_script_that_never_logs_the_primary_metric_fails_with_a_clear_error(baseline_workspace, tmp_path):
    script = edited_copy(baseline_workspace, tmp_path, "    mlflow.log_metrics(validated)\n", "")
    with pytest.raises(MetricNotLoggedError, match="never logged AUC_weighted, the metric it is compared on") as error:
        refine(params(baseline_workspace, script=script))
    assert "jobs.download" in str(error.value)


def test_a_script_that_raises_fails_with_its_exception_and_log_tail(baseline_workspace, tmp_path):
    script = edited_copy(baseline_workspace, tmp_path, "    args = parse_args()\n", "    args = parse_args()\n    raise RuntimeError('bad edit')\n")
    with pytest.raises(JobFailedError) as error:
        refine(params(baseline_workspace, script=script))
    message = str(error.value)
    assert "RuntimeError: bad edit" in message and "last lines of its log" in message and "Traceback" in message


def test_an_edited_script_with_a_syntax_error_is_rejected_before_anything_runs(baseline_workspace, tmp_path):
    script = edited_copy(baseline_workspace, tmp_path, "def main():", "def main(:")
    jobs_before = len(list(client().jobs.list()))
    with pytest.raises(ValidationError, match=r"script.py has a syntax error at line \d+"):
        params(baseline_workspace, script=script)
    assert len(list(client().jobs.list())) == jobs_before


def test_an_option_the_generated_script_lacks_fails_before_a_job(baseline_workspace):
    jobs_before = len(list(client().jobs.list()))
    with pytest.raises(ValueError, match="script.py has no --max_depth_typo argument; it accepts: ") as refused:
        refine(params(baseline_workspace, hyperparameters={"max_depth_typo": 3}))
    # the message itself, not a dump of a parameter model built inside the flow
    assert not isinstance(refused.value, ValidationError) and "pydantic" not in str(refused.value)
    assert len(list(client().jobs.list())) == jobs_before


def test_a_generated_script_edited_in_place_is_never_overwritten(baseline_workspace):
    run = baseline_workspace
    generated = run.generated / run.result.job_name / "script.py"
    if not generated.exists():
        refine(params(run))
    original = generated.read_text()
    try:
        generated.write_text(original + "\n# my notes\n")
        with pytest.raises(ValueError, match="it was edited, and is left as it is"):
            refine(params(run))
        assert generated.read_text().endswith("# my notes\n")
    finally:
        generated.write_text(original)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"script": "missing/script.py"}, "Script 'missing/script.py' not found"),
        ({"environment": "missing/conda.yml"}, "Conda file 'missing/conda.yml' not found"),
        ({"registration_rule": "sometimes"}, "registration_rule"),
    ],
)
def test_bad_parameters_are_rejected_before_anything_runs(overrides, message):
    with pytest.raises(ValidationError, match=message):
        RefineParameters(**overrides)


def test_an_unknown_baseline_model_is_a_clear_error(baseline_workspace):
    with pytest.raises(Exception, match="no-such-model"):
        refine(params(baseline_workspace, baseline="azureml:no-such-model@latest"))


def test_a_conda_file_without_dependencies_is_rejected_before_anything_runs(tmp_path):
    conda = tmp_path / "conda.yml"
    conda.write_text("name: broken\ndependencies: scikit-learn\n")
    with pytest.raises(ValidationError, match="needs a 'dependencies' list"):
        RefineParameters(environment=str(conda))
