"""A job sees Azure's environment, not its submitter's: real jobs, started by a process holding secrets."""

from __future__ import annotations

import json

from azure.ai.ml import command
from azure.ai.ml.sweep import Choice

ENV = "AzureML-sklearn-1.5@latest"
#: Prints the job's whole environment as one JSON line of its log.
PRINT_ENVIRONMENT = "python -c 'import json, os; print(\"ENVIRONMENT\", json.dumps(dict(os.environ)))'"


def environment_of(ml_client, helpers, job) -> dict[str, str]:
    """Run ``job`` to completion and return the environment its command saw."""
    name = ml_client.jobs.create_or_update(job).name
    assert helpers.wait_for_status(ml_client, name) == "Completed"
    log = (ml_client._workspace.job_dir(name) / "user_logs" / "std_log.txt").read_text()
    (line,) = [line for line in log.splitlines() if line.startswith("ENVIRONMENT ")]
    return json.loads(line.removeprefix("ENVIRONMENT "))


def test_a_job_sees_its_own_variables_and_the_platforms_but_not_the_submitters_secrets(ml_client, helpers, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "client-secret-of-the-submitter")
    monkeypatch.setenv("MY_SECRET", "a secret of the submitter")
    monkeypatch.setenv("LC_TIME", "C")
    seen = environment_of(ml_client, helpers, command(command=PRINT_ENVIRONMENT, environment=ENV, environment_variables={"MY_SETTING": "on"}))
    assert "AZURE_CLIENT_SECRET" not in seen and "MY_SECRET" not in seen
    assert seen["MY_SETTING"] == "on"
    assert seen["MLFLOW_RUN_ID"] == seen["AZUREML_RUN_ID"] and seen["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
    assert seen["HOME"] and seen["PATH"] and seen["LC_TIME"] == "C"  # what a process needs to run, as the platform gives


def test_a_variable_named_in_the_passthrough_list_reaches_the_job_and_nothing_else_does(ml_client, helpers, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "client-secret-of-the-submitter")
    monkeypatch.setenv("MY_SECRET", "meant for the job")
    monkeypatch.setenv("LOCALML_JOB_ENV_PASSTHROUGH", "MY_SECRET, NOT_SET_ANYWHERE")
    seen = environment_of(ml_client, helpers, command(command=PRINT_ENVIRONMENT, environment=ENV))
    assert seen["MY_SECRET"] == "meant for the job"
    assert "AZURE_CLIENT_SECRET" not in seen and "NOT_SET_ANYWHERE" not in seen


def test_a_jobs_own_variable_wins_over_a_passed_through_one(ml_client, helpers, monkeypatch):
    monkeypatch.setenv("MODE", "machine")
    monkeypatch.setenv("LOCALML_JOB_ENV_PASSTHROUGH", "MODE")
    job = command(command=PRINT_ENVIRONMENT, environment=ENV, environment_variables={"MODE": "job"})
    assert environment_of(ml_client, helpers, job)["MODE"] == "job"


def test_a_job_gives_mlflow_its_name_as_a_tag_for_what_it_logs_beside_the_tags_its_own_environment_gives(ml_client, helpers):
    # MLFLOW_RUN_CONTEXT: the tags MLflow puts on what it creates, so a model logged with no run started names its job
    job = command(command=PRINT_ENVIRONMENT, environment=ENV, environment_variables={"MLFLOW_RUN_CONTEXT": '{"team": "fraud"}'})
    seen = environment_of(ml_client, helpers, job)
    assert json.loads(seen["MLFLOW_RUN_CONTEXT"]) == {"team": "fraud", "localml.job": seen["MLFLOW_RUN_ID"]}


def test_a_sweeps_trials_get_the_passthrough_variables_through_the_sweeps_driver(ml_client, helpers, monkeypatch, tmp_path):
    # the driver is localml's stand-in for Azure's sweep service, itself a job: it must still start, and pass the list on
    code = tmp_path / "trial"
    code.mkdir()
    (code / "trial.py").write_text(
        "import json, os, sys\nimport mlflow\n"
        "print('ENVIRONMENT', json.dumps(dict(os.environ)))\nmlflow.log_metric('score', float(sys.argv[1]))\n"
    )
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "client-secret-of-the-submitter")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("LOCALML_JOB_ENV_PASSTHROUGH", "CUDA_VISIBLE_DEVICES")
    trial = command(code=str(code), command="python trial.py ${{inputs.r}}", inputs={"r": 1.0}, environment=ENV)
    sweep = trial(r=Choice(values=[1.0])).sweep(sampling_algorithm="grid", primary_metric="score", goal="Maximize")
    sweep.set_limits(max_total_trials=1, max_concurrent_trials=1)
    name = ml_client.jobs.create_or_update(sweep).name
    assert helpers.wait_for_status(ml_client, name) == "Completed", ml_client.jobs.get(name).properties["localml.error"]
    (only,) = ml_client.jobs.list(parent_job_name=name)
    log = (ml_client._workspace.job_dir(only.name) / "user_logs" / "std_log.txt").read_text()
    (line,) = [line for line in log.splitlines() if line.startswith("ENVIRONMENT ")]
    seen = json.loads(line.removeprefix("ENVIRONMENT "))
    assert seen["CUDA_VISIBLE_DEVICES"] == "0" and "AZURE_CLIENT_SECRET" not in seen
