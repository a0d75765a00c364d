"""Batch endpoints and deployments on localml: Azure's code, unchanged but for the client line, scores folders of files.

Real parts only: each invoke runs localml's batch driver as a detached job, with worker processes that load a real
MLflow model or a real scoring script.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import warnings
from pathlib import Path

import pandas as pd
import pytest
from azure.ai.ml import Input
from azure.ai.ml.constants import AssetTypes, BatchDeploymentOutputAction
from azure.ai.ml.entities import (
    AmlCompute,
    BatchDeployment,
    BatchEndpoint,
    BatchRetrySettings,
    CodeConfiguration,
    Data,
    Environment,
    Model,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
)
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import ResourceNotFoundError

REPO = Path(__file__).resolve().parents[2]
PATIENTS = REPO / "examples" / "data" / "patient-data"
DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
FEATURES = ["Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness", "SerumInsulin", "BMI",
            "DiabetesPedigree", "Age"]


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory) -> Path:
    """A tiny scikit-learn diabetes classifier saved as an MLflow model with its inferred signature."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    training = pd.read_csv(DIABETES_CSV, nrows=1000)
    features, label = training.drop(columns=["PatientID", "Diabetic"]), training["Diabetic"]
    classifier = LogisticRegression(max_iter=500).fit(features, label)
    folder = tmp_path_factory.mktemp("batch-model") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hints on integer columns and pickles: this model is ours
        mlflow.sklearn.save_model(classifier, folder, serialization_format="cloudpickle", pip_requirements=["scikit-learn"],
                                  signature=infer_signature(features, classifier.predict(features)))
    return folder


@pytest.fixture
def model(ml_client, mlflow_model_dir):
    return ml_client.models.create_or_update(Model(path=str(mlflow_model_dir), type=AssetTypes.MLFLOW_MODEL, name="diabetes-mlflow"))


@pytest.fixture
def cluster(ml_client):
    return ml_client.begin_create_or_update(AmlCompute(name="aml-cluster", max_instances=2)).result()


@pytest.fixture
def endpoint(ml_client):
    endpoint = BatchEndpoint(name="diabetes-batch", description="A batch endpoint for classifying diabetes in patients")
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    return endpoint


def mlflow_deployment(endpoint, model, **settings) -> ModelBatchDeployment:
    return ModelBatchDeployment(name="classifier", endpoint_name=endpoint.name, model=model, compute="aml-cluster",
                                settings=ModelBatchDeploymentSettings(**{"mini_batch_size": 2, **settings}))


# -- the operation groups ---------------------------------------------------------------------------------------


def test_an_endpoint_and_its_deployment_are_created_read_listed_and_deleted(ml_client, model, cluster, endpoint):
    deployment = mlflow_deployment(endpoint, model)
    created = ml_client.batch_deployments.begin_create_or_update(deployment).result()
    assert created.provisioning_state == "Succeeded"
    assert created.model == "azureml:diabetes-mlflow:1"
    endpoint.defaults = {"deployment_name": deployment.name}
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()

    got = ml_client.batch_endpoints.get(endpoint.name)
    assert (got.name, got.description, got.defaults.deployment_name) == (endpoint.name, endpoint.description, "classifier")
    assert [e.name for e in ml_client.batch_endpoints.list()] == ["diabetes-batch"]
    assert [d.name for d in ml_client.batch_deployments.list(endpoint_name=endpoint.name)] == ["classifier"]
    # what get returns passes Azure's own checks, so code that sends it back to Azure can
    got._to_rest_batch_endpoint(location="local")
    ml_client.batch_deployments.get("classifier", endpoint.name)._to_rest_object(location="local")

    ml_client.batch_endpoints.begin_delete(endpoint.name).result()
    with pytest.raises(ResourceNotFoundError, match="diabetes-batch"):
        ml_client.batch_endpoints.get(endpoint.name)
    with pytest.raises(ResourceNotFoundError, match="diabetes-batch"):
        ml_client.batch_deployments.get("classifier", endpoint_name=endpoint.name)


def test_a_deployment_gets_azures_defaults_for_what_it_leaves_unset(ml_client, model, cluster, endpoint):
    deployment = ModelBatchDeployment(name="plain", endpoint_name=endpoint.name, model=model, compute="aml-cluster")
    ml_client.batch_deployments.begin_create_or_update(deployment).result()
    settings = ml_client.batch_deployments.get("plain", endpoint.name).settings
    assert (settings.mini_batch_size, settings.instance_count, settings.max_concurrency_per_instance) == (10, 1, 1)
    assert (settings.error_threshold, settings.output_action, settings.output_file_name) == (-1, "append_row", "predictions.csv")
    assert (settings.retry_settings.max_retries, settings.retry_settings.timeout, settings.logging_level) == (3, 30, "info")


def test_the_legacy_flat_batch_deployment_is_taken_too(ml_client, model, cluster, endpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's deprecation notice for BatchDeployment
        deployment = BatchDeployment(name="legacy", endpoint_name=endpoint.name, model=model, compute="aml-cluster",
                                     instance_count=2, max_concurrency_per_instance=3, mini_batch_size=5,
                                     retry_settings=BatchRetrySettings(max_retries=1, timeout=60))
    ml_client.begin_create_or_update(deployment).result()  # MLClient.begin_create_or_update dispatches it too
    settings = ml_client.batch_deployments.get("legacy", endpoint.name).settings
    assert (settings.instance_count, settings.max_concurrency_per_instance, settings.mini_batch_size) == (2, 3, 5)
    assert (settings.retry_settings.max_retries, settings.retry_settings.timeout) == (1, 60)


def test_a_mini_batch_size_of_zero_is_refused(ml_client, model, cluster, endpoint):
    with pytest.raises(ValidationException, match="mini_batch_size is 0"):
        ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model, mini_batch_size=0))


def test_summary_only_with_an_output_file_name_is_refused(ml_client, model, cluster, endpoint):
    deployment = mlflow_deployment(endpoint, model, output_action=BatchDeploymentOutputAction.SUMMARY_ONLY,
                                   output_file_name="predictions.csv")
    with pytest.raises(ValidationException, match="summary_only.*output_file_name"):
        ml_client.batch_deployments.begin_create_or_update(deployment)


def test_a_model_that_is_not_mlflow_needs_a_scoring_script(ml_client, tmp_path, cluster, endpoint):
    (tmp_path / "model.pkl").write_bytes(b"not a model")
    custom = ml_client.models.create_or_update(Model(path=str(tmp_path / "model.pkl"), name="custom", type="custom_model"))
    deployment = ModelBatchDeployment(name="custom", endpoint_name=endpoint.name, model=custom, compute="aml-cluster")
    with pytest.raises(ValidationException, match="needs a batch scoring script"):
        ml_client.batch_deployments.begin_create_or_update(deployment)


def test_a_deployment_of_an_unknown_endpoint_or_compute_is_refused(ml_client, model, cluster, endpoint):
    with pytest.raises(ResourceNotFoundError, match="nowhere"):
        ml_client.batch_deployments.begin_create_or_update(
            ModelBatchDeployment(name="lost", endpoint_name="nowhere", model=model, compute="aml-cluster"))
    with pytest.raises(ResourceNotFoundError, match="no-such-cluster"):
        ml_client.batch_deployments.begin_create_or_update(
            ModelBatchDeployment(name="lost", endpoint_name=endpoint.name, model=model, compute="no-such-cluster"))


def test_the_default_deployment_must_exist_and_cannot_be_deleted(ml_client, model, cluster, endpoint):
    endpoint.defaults = {"deployment_name": "classifier"}
    with pytest.raises(ValidationException, match="has no deployments"):
        ml_client.batch_endpoints.begin_create_or_update(endpoint)
    ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model)).result()
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    with pytest.raises(ValidationException, match="default deployment"):
        ml_client.batch_deployments.begin_delete(name="classifier", endpoint_name=endpoint.name)


# -- scoring ------------------------------------------------------------------------------------------------------

#: A batch scoring script flagging high glucose; FAIL_FIRST / HANG_FIRST / ALWAYS_FAIL name files that fail on their first
#: try, hang on their first try, or always fail (each first try leaves a marker in MARKERS, shared by every worker).
SCORE_PY = """
import os, time
from pathlib import Path
import pandas as pd

def init():
    global threshold
    threshold = float(Path(os.environ["AZUREML_MODEL_DIR"], "threshold", "threshold.txt").read_text())  # the model folder, as on Azure
    Path(os.environ["MARKERS"], f"worker-{os.getpid()}").touch()

def first_try(name):
    marker = Path(os.environ["MARKERS"], name)
    if marker.exists():
        return False
    marker.touch()
    return True

def run(mini_batch):
    frames = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name in os.environ.get("ALWAYS_FAIL", "").split(","):
            raise ValueError(f"{name} always fails")
        if name in os.environ.get("FAIL_FIRST", "").split(",") and first_try(name):
            raise RuntimeError(f"{name} fails on its first try")
        if name in os.environ.get("HANG_FIRST", "").split(",") and first_try(name):
            time.sleep(float(os.environ.get("HANG_SECONDS", "60")))
        data = pd.read_csv(path)
        frames.append(pd.DataFrame({"file": name, "glucose": data["PlasmaGlucose"], "high": data["PlasmaGlucose"] > threshold}))
    return pd.concat(frames)
"""


@pytest.fixture
def script_deployment(ml_client, tmp_path, cluster, endpoint):
    """Make a deployment of endpoint ``endpoint`` running SCORE_PY, with these environment variables and settings."""
    (tmp_path / "threshold").mkdir()
    (tmp_path / "threshold" / "threshold.txt").write_text("120")
    threshold = ml_client.models.create_or_update(Model(path=str(tmp_path / "threshold"), name="glucose-threshold", type="custom_model"))
    (tmp_path / "score").mkdir()
    (tmp_path / "score" / "score.py").write_text(textwrap.dedent(SCORE_PY))
    markers = tmp_path / "markers"
    markers.mkdir()

    def make(name: str, variables: dict | None = None, **settings) -> ModelBatchDeployment:
        deployment = ModelBatchDeployment(
            name=name, endpoint_name=endpoint.name, model=threshold, compute="aml-cluster",
            code_configuration=CodeConfiguration(code=str(tmp_path / "score"), scoring_script="score.py"),
            environment="AzureML-sklearn-1.5@latest",
            settings=ModelBatchDeploymentSettings(**{"mini_batch_size": 1, "max_concurrency_per_instance": 2,
                                                    "environment_variables": {"MARKERS": str(markers), **(variables or {})},
                                                    **settings}),
        )
        return ml_client.batch_deployments.begin_create_or_update(deployment).result()

    make.markers = markers
    return make


def patients() -> Input:
    return Input(type=AssetTypes.URI_FOLDER, path=str(PATIENTS))


def finished(ml_client, helpers, job) -> str:
    return helpers.wait_for_status(ml_client, job.name)


def read_output(ml_client, job, folder: Path, names: list[str], file_name: str = "predictions.csv") -> pd.DataFrame:
    ml_client.jobs.download(name=job.name, download_path=str(folder), output_name="score")
    return pd.read_csv(folder / "named-outputs" / "score" / file_name, names=names)


def std_log(ml_client, job) -> str:
    return (ml_client._workspace.job_dir(job.name) / "user_logs" / "std_log.txt").read_text()


def test_the_dp100_batch_code_runs_unchanged_but_for_the_client_line(ml_client, helpers, tmp_path, monkeypatch, mlflow_model_dir):
    monkeypatch.chdir(tmp_path)
    ml_client.begin_create_or_update(AmlCompute(name="aml-cluster", max_instances=2)).result()
    model = ml_client.models.create_or_update(Model(name="diabetes-mlflow", path=str(mlflow_model_dir), type=AssetTypes.MLFLOW_MODEL))
    data = ml_client.data.create_or_update(Data(path=str(PATIENTS), type=AssetTypes.URI_FOLDER, name="patient-data-unlabeled"))
    # from here, the code as written for Azure
    endpoint = BatchEndpoint(name="diabetes-batch", description="A batch endpoint for classifying diabetes in patients")
    ml_client.batch_endpoints.begin_create_or_update(endpoint)
    deployment = ModelBatchDeployment(
        name="classifier-diabetes-mlflow", endpoint_name=endpoint.name, model=model, compute="aml-cluster",
        instance_count=2, max_concurrency_per_instance=2, mini_batch_size=2,
        output_action=BatchDeploymentOutputAction.APPEND_ROW, output_file_name="predictions.csv",
        retry_settings=BatchRetrySettings(max_retries=3, timeout=300), logging_level="info")
    ml_client.batch_deployments.begin_create_or_update(deployment)
    endpoint.defaults = {"deployment_name": deployment.name}
    ml_client.batch_endpoints.begin_create_or_update(endpoint)
    job = ml_client.batch_endpoints.invoke(endpoint_name=endpoint.name, input=Input(type=AssetTypes.URI_FOLDER, path=data.id))
    assert finished(ml_client, helpers, job) == "Completed"
    ml_client.jobs.download(name=job.name, download_path=".", output_name="score")

    score = pd.read_csv("named-outputs/score/predictions.csv", index_col=0, names=["patient", "prediction", "file"])
    assert len(score) == 400
    assert score["file"].value_counts().to_dict() == {f"patient-data-{n}.csv": 100 for n in range(4)}
    assert set(score["prediction"]) <= {0, 1}
    assert list(score.index[:3]) == [0, 1, 2]  # each row's number within its file
    assert [j.name for j in ml_client.batch_endpoints.list_jobs(endpoint_name=endpoint.name)] == [job.name]
    properties = ml_client.jobs.get(job.name).properties
    assert (properties["mini_batches"], properties["rows_succeeded"], properties["rows_failed"]) == ("2", "400", "0")


def test_a_custom_batch_scoring_script_scores_every_file_once(ml_client, helpers, tmp_path, script_deployment, endpoint):
    script_deployment("glucose", mini_batch_size=3, output_file_name="flags.csv")
    stored = ml_client.data.create_or_update(Data(path=str(PATIENTS), type=AssetTypes.URI_FOLDER, name="patients")).path
    assert stored.startswith("azureml://datastores/workspaceblobstore/paths/")  # a datastore folder as the input
    job = ml_client.batch_endpoints.invoke(endpoint_name=endpoint.name, deployment_name="glucose",
                                           inputs={"patients": Input(type=AssetTypes.URI_FOLDER, path=stored)})
    assert (job.name, job.status) == (job.name, "NotStarted") and job.type.endswith("batchEndpoints/jobs")
    assert finished(ml_client, helpers, job) == "Completed"
    flags = read_output(ml_client, job, tmp_path / "out", ["file", "glucose", "high"], "flags.csv")
    assert flags["file"].value_counts().to_dict() == {f"patient-data-{n}.csv": 100 for n in range(4)}
    assert (flags["high"] == (flags["glucose"] > 120)).all()
    # two mini-batches (3 files, then 1) on two workers, each loading the script once
    assert len(list(script_deployment.markers.glob("worker-*"))) == 2


def test_a_mini_batch_that_fails_or_hangs_on_its_first_try_is_retried_and_written_once(
        ml_client, helpers, tmp_path, script_deployment, endpoint):
    script_deployment("flaky", {"FAIL_FIRST": "patient-data-1.csv", "HANG_FIRST": "patient-data-2.csv", "HANG_SECONDS": "60"},
                      retry_settings=BatchRetrySettings(max_retries=2, timeout=3))
    job = ml_client.batch_endpoints.invoke(endpoint_name=endpoint.name, deployment_name="flaky", input=patients())
    assert finished(ml_client, helpers, job) == "Completed"
    flags = read_output(ml_client, job, tmp_path / "out", ["file", "glucose", "high"])
    assert flags["file"].value_counts().to_dict() == {f"patient-data-{n}.csv": 100 for n in range(4)}
    assert flags["file"].tolist() == sorted(flags["file"])  # in mini-batch order, whatever order they finished in
    log = std_log(ml_client, job)
    assert "(patient-data-1.csv), attempt 1/3 on worker" in log and "RuntimeError: patient-data-1.csv fails on its first try; retrying" in log
    assert "(patient-data-2.csv), attempt 1/3" in log and "ran over its timeout of 3 s" in log
    assert "(patient-data-2.csv), attempt 2/3" in log


def test_a_file_that_always_fails_fails_its_mini_batch_and_the_job_only_past_the_error_threshold(
        ml_client, helpers, tmp_path, script_deployment, endpoint):
    failing = {"ALWAYS_FAIL": "patient-data-3.csv"}
    script_deployment("tolerant", failing, error_threshold=1, retry_settings=BatchRetrySettings(max_retries=1, timeout=30))
    script_deployment("strict", failing, error_threshold=0, retry_settings=BatchRetrySettings(max_retries=1, timeout=30),
                      logging_level="warning")
    ml_client.data.create_or_update(Data(path=str(PATIENTS), type=AssetTypes.URI_FOLDER, name="patients"))
    registered = Input(type=AssetTypes.URI_FOLDER, path="azureml:patients:1")
    tolerant = ml_client.batch_endpoints.invoke(endpoint_name=endpoint.name, deployment_name="tolerant", input=registered)
    strict = ml_client.batch_endpoints.invoke(endpoint_name=endpoint.name, deployment_name="strict", input=registered)

    assert finished(ml_client, helpers, tolerant) == "Completed"
    flags = read_output(ml_client, tolerant, tmp_path / "out", ["file", "glucose", "high"])
    assert sorted(set(flags["file"])) == ["patient-data-0.csv", "patient-data-1.csv", "patient-data-2.csv"]
    properties = ml_client.jobs.get(tolerant.name).properties
    assert (properties["mini_batches_failed"], properties["files_failed"], properties["rows_failed"]) == ("1", "1", "100")
    assert "ValueError: patient-data-3.csv always fails" in std_log(ml_client, tolerant)

    assert finished(ml_client, helpers, strict) == "Failed"
    assert "row(s) in" not in std_log(ml_client, strict) and "always fails" in std_log(ml_client, strict)  # logging_level warning
    error = ml_client.jobs.get(strict.name).properties["localml.error"]
    assert "error threshold was passed" in error and "error_threshold is 0" in error
    assert [j.name for j in ml_client.batch_endpoints.list_jobs(endpoint.name)] == [tolerant.name, strict.name]


def test_csv_and_parquet_files_score_and_one_whose_columns_do_not_match_the_signature_fails_alone_naming_them(
        ml_client, helpers, tmp_path, model, cluster, endpoint):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(PATIENTS / "patient-data-0.csv", folder)
    pd.read_csv(PATIENTS / "patient-data-1.csv").rename(columns={"BMI": "Weight"}).to_csv(folder / "renamed.csv", index=False)
    pd.read_csv(PATIENTS / "patient-data-2.csv").to_parquet(folder / "patient-data-2.parquet")
    ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model, mini_batch_size=1)).result()
    job = ml_client.batch_endpoints.invoke(endpoint.name, deployment_name="classifier",
                                           input=Input(type=AssetTypes.URI_FOLDER, path=str(folder)))
    assert finished(ml_client, helpers, job) == "Completed"  # error_threshold -1: failures never fail the job
    score = read_output(ml_client, job, tmp_path / "out", ["row", "prediction", "file"])
    assert score["file"].value_counts().to_dict() == {"patient-data-0.csv": 100, "patient-data-2.parquet": 100}
    assert "renamed.csv lacks the column(s) BMI and has column(s) the model does not know: Weight" in std_log(ml_client, job)


def test_a_scoring_script_whose_init_fails_fails_the_job_with_its_error(ml_client, helpers, tmp_path, cluster, endpoint):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def init():\n    raise RuntimeError('no model here')\n\ndef run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "model.txt").write_text("unused")
    ml_client.batch_deployments.begin_create_or_update(ModelBatchDeployment(
        name="broken", endpoint_name=endpoint.name, compute="aml-cluster", environment="AzureML-sklearn-1.5@latest",
        model=Model(path=str(tmp_path / "model.txt"), name="unused"),  # a local model: registered, as Azure's SDK does
        code_configuration=CodeConfiguration(code=str(tmp_path / "src"), scoring_script="score.py"),
        settings=ModelBatchDeploymentSettings(mini_batch_size=1, instance_count=5, logging_level="debug"))).result()
    job = ml_client.batch_endpoints.invoke(endpoint.name, deployment_name="broken", input=patients())
    assert finished(ml_client, helpers, job) == "Failed"
    assert "could not load the model: RuntimeError: no model here" in ml_client.jobs.get(job.name).properties["localml.error"]
    log = std_log(ml_client, job)
    assert "on 2 instance(s) x 1 worker(s)" in log  # instance_count 5, but the cluster lends at most max_instances 2
    assert "(pid " in log and "could not load it" in log  # debug shows the workers' starts


def test_canceling_a_batch_job_stops_its_workers(ml_client, helpers, script_deployment, endpoint):
    script_deployment("slow", {"HANG_FIRST": "patient-data-0.csv,patient-data-1.csv", "HANG_SECONDS": "120"},
                      retry_settings=BatchRetrySettings(max_retries=0, timeout=300))
    job = ml_client.batch_endpoints.invoke(endpoint.name, deployment_name="slow", input=patients())
    helpers.wait_for(lambda: len(list(script_deployment.markers.glob("patient-data-*"))) == 2, what="both workers to hang")
    workers = [int(p.name.removeprefix("worker-")) for p in script_deployment.markers.glob("worker-*")]
    ml_client.jobs.begin_cancel(job.name).result(timeout=60)
    assert ml_client.jobs.get(job.name).status == "Canceled"
    helpers.wait_for(lambda: all(helpers.process_gone(pid) for pid in workers), timeout=30, what="the workers to end")


def test_a_scoring_script_runs_in_its_deployments_conda_environment(ml_client, helpers, tmp_path, cluster, endpoint):
    # the venv holds six alone (an 11 kB wheel): the driver and workers need only the standard library there
    (tmp_path / "conda.yml").write_text(f"dependencies:\n  - python={sys.version_info.major}.{sys.version_info.minor}\n"
                                        "  - pip\n  - pip:\n    - six==1.16.0\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(textwrap.dedent("""
        import csv, os, sys, six

        def init():
            print("scoring in", sys.prefix, "with six", six.__version__, flush=True)

        def run(mini_batch):
            return [(os.path.basename(path), sum(1 for _ in csv.reader(open(path))) - 1, sys.prefix) for path in mini_batch]
    """))
    (tmp_path / "model.txt").write_text("unused")
    ml_client.batch_deployments.begin_create_or_update(ModelBatchDeployment(
        name="in-venv", endpoint_name=endpoint.name, compute="aml-cluster", model=Model(path=str(tmp_path / "model.txt"), name="unused"),
        environment=Environment(name="six-only", conda_file=str(tmp_path / "conda.yml")),
        code_configuration=CodeConfiguration(code=str(tmp_path / "src"), scoring_script="score.py"),
        settings=ModelBatchDeploymentSettings(mini_batch_size=4))).result()
    job = ml_client.batch_endpoints.invoke(endpoint.name, deployment_name="in-venv", input=patients())
    assert finished(ml_client, helpers, job) == "Completed", ml_client.jobs.get(job.name).properties["localml.error"]
    counts = read_output(ml_client, job, tmp_path / "out", ["file", "rows", "prefix"])
    assert counts["rows"].tolist() == [100] * 4
    assert set(counts["prefix"]) == {str(next((ml_client.root / "environments").iterdir()) / "venv")}


# -- bad input at invoke ---------------------------------------------------------------------------------------------


def test_invoking_with_an_empty_folder_is_refused_at_once(ml_client, tmp_path, model, cluster, endpoint):
    ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model)).result()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationException, match="holds no files to score"):
        ml_client.batch_endpoints.invoke(endpoint.name, deployment_name="classifier",
                                         input=Input(type=AssetTypes.URI_FOLDER, path=str(tmp_path / "empty")))
    assert ml_client.batch_endpoints.list_jobs(endpoint.name) == []


def test_invoking_an_unknown_deployment_is_refused_naming_the_known_ones(ml_client, model, cluster, endpoint):
    ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model)).result()
    with pytest.raises(ValidationException, match="Deployment name nope not found.*classifier"):
        ml_client.batch_endpoints.invoke(endpoint.name, deployment_name="nope", input=patients())


def test_invoking_an_endpoint_without_a_default_deployment_needs_one_named(ml_client, model, cluster, endpoint):
    with pytest.raises(ValidationException, match="No deployment exists"):
        ml_client.batch_endpoints.invoke(endpoint.name, input=patients())
    ml_client.batch_deployments.begin_create_or_update(mlflow_deployment(endpoint, model)).result()
    with pytest.raises(ValidationException, match="no default deployment and invoke named none.*deployment_name='classifier'"):
        ml_client.batch_endpoints.invoke(endpoint.name, input=patients())
