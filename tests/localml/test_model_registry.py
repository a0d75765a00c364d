"""The workspace's MLflow model registry and ``ml_client.models`` hold the same versions, as on Azure.

Real parts only: the MLflow registry of the test's own workspace, written through MLflow's own API
(``mlflow.register_model``, ``MlflowClient``) and read back through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest
from azure.ai.ml import Input, command
from azure.ai.ml.entities import Model
from azure.core.exceptions import ResourceNotFoundError
from sklearn.linear_model import LogisticRegression

from localml import LocalMLClient
from localml.errors import LocalMLValidationError

ENV = "AzureML-sklearn-1.5@latest"
ROWS = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 0.5, 2.5], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
LABELS = [0, 0, 1, 1, 0, 1]


@pytest.fixture
def mlflow_client(ml_client, monkeypatch):
    """An MlflowClient on the workspace's tracking URI, which is also where ``mlflow.*`` calls in the test go."""
    from mlflow.tracking import MlflowClient

    uri = ml_client.workspaces.get(ml_client.workspace_name).mlflow_tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def folder(path: Path, **files: str) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def stored(ml_client, model) -> Path:
    return ml_client._workspace.resolve_uri(model.path)


def log_a_model(mlflow_client, tmp_path) -> str:
    """A LogisticRegression logged with MLflow 3's ``log_model`` (a logged model linked to the run); the run id."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model = LogisticRegression().fit(ROWS, LABELS)
    experiment = mlflow_client.create_experiment(f"outside-{uuid.uuid4().hex[:8]}", artifact_location=(tmp_path / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.sklearn.log_model(
            model, name="model", serialization_format="cloudpickle", pip_requirements=["scikit-learn"],
            signature=infer_signature(ROWS, model.predict(ROWS)),
        )
    return run.info.run_id


# --------------------------------------------------------------------------- ml_client.models -> MLflow

def test_a_model_registered_with_ml_client_is_in_the_mlflow_registry_under_the_same_number(ml_client, mlflow_client, tmp_path):
    weights = folder(tmp_path / "weights", **{"w.bin": "1"})
    custom = ml_client.models.create_or_update(
        Model(name="clf", path=str(weights), type="custom_model", description="first", tags={"round": "1"})
    )
    flavour = folder(tmp_path / "flavour", MLmodel="flavors: {}\n", **{"w.bin": "2"})
    mlflow_model = ml_client.models.create_or_update(Model(name="clf", path=str(flavour), type="mlflow_model", tags={"round": "2"}))
    assert (custom.version, mlflow_model.version) == ("1", "2")

    assert mlflow_client.get_registered_model("clf").name == "clf"
    versions = sorted(mlflow_client.search_model_versions("name = 'clf'"), key=lambda v: int(v.version))
    assert [(str(v.version), v.tags, v.description or None) for v in versions] == [("1", {"round": "1"}, "first"), ("2", {"round": "2"}, None)]
    # the source is the stored copy, not the folder it was registered from
    assert [v.source for v in versions] == [stored(ml_client, custom).as_uri(), stored(ml_client, mlflow_model).as_uri()]
    assert all(v.run_id is None for v in versions)


def test_a_model_from_a_run_is_linked_to_its_run_in_the_mlflow_registry(ml_client, mlflow_client, tmp_path):
    run_id = log_a_model(mlflow_client, tmp_path)
    model = ml_client.models.create_or_update(Model(name="from-run", path=f"runs:/{run_id}/model", type="mlflow_model"))
    version = mlflow_client.get_model_version("from-run", model.version)
    assert (str(version.version), version.run_id, version.source) == ("1", run_id, stored(ml_client, model).as_uri())
    assert (stored(ml_client, model) / "MLmodel").is_file()


def test_changing_tags_description_stage_or_archiving_a_version_shows_in_the_mlflow_registry(ml_client, mlflow_client, tmp_path):
    ml_client.models.create_or_update(Model(name="clf", path=str(folder(tmp_path / "m", **{"w.bin": "1"})), tags={"keep": "1", "drop": "1"}))
    model = ml_client.models.get("clf", version="1")
    model.tags = {"keep": "2", "verdict": "passed"}
    model.description = "reviewed"
    model.stage = "Production"
    ml_client.models.create_or_update(model)
    version = mlflow_client.get_model_version("clf", "1")
    assert (version.tags, version.description, version.current_stage) == ({"keep": "2", "verdict": "passed"}, "reviewed", "Production")

    ml_client.models.archive("clf", version="1")
    assert mlflow_client.get_model_version("clf", "1").current_stage == "Archived"
    ml_client.models.restore("clf", version="1")
    assert mlflow_client.get_model_version("clf", "1").current_stage == "Production"
    # Azure's stage is free text; one MLflow does not know leaves MLflow's stage at None
    model.stage = "Development"
    ml_client.models.create_or_update(model)
    assert mlflow_client.get_model_version("clf", "1").current_stage == "None"


def test_explicit_versions_keep_their_numbers_and_the_next_number_follows_on_both_sides(ml_client, mlflow_client, tmp_path):
    import mlflow

    ml_client.models.create_or_update(Model(name="clf", version="5", path=str(folder(tmp_path / "five", **{"w.bin": "5"}))))
    # a version MLflow cannot number stays in the catalog only, and takes no number from either side
    ml_client.models.create_or_update(Model(name="clf", version="best", path=str(folder(tmp_path / "best", **{"w.bin": "b"}))))
    assert mlflow_client.get_model_version("clf", "5").tags == {}
    registered = mlflow.register_model(str(folder(tmp_path / "six", MLmodel="flavors: {}\n")), "clf")
    assert str(registered.version) == "6"
    after = ml_client.models.create_or_update(Model(name="clf", path=str(folder(tmp_path / "seven", **{"w.bin": "7"}))))
    assert after.version == "7"
    assert [m.version for m in ml_client.models.list(name="clf")] == ["5", "best", "6", "7"]
    assert sorted(int(v.version) for v in mlflow_client.search_model_versions("name = 'clf'")) == [5, 6, 7]


# --------------------------------------------------------------------------- models a job logged the MLflow 3 way

#: A training script as Azure users write it: the first model logged with no run started (MLflow 3 then links it to
#: no run), the second inside ``mlflow.start_run()`` (the job's run, from MLFLOW_RUN_ID: linked to it).
LOGGING_SCRIPT = """
import mlflow, mlflow.sklearn, pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
rows = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 0.5, 2.5], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
model = LogisticRegression().fit(rows, [0, 0, 1, 1, 0, 1])
kwargs = dict(signature=infer_signature(rows, model.predict(rows)), serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
mlflow.sklearn.log_model(model, "model", **kwargs)
with mlflow.start_run():
    mlflow.sklearn.log_model(model, name="linked", **kwargs)
"""


@pytest.fixture
def logging_job(ml_client, tmp_path, helpers) -> str:
    """The name of a completed job that ran LOGGING_SCRIPT."""
    code = folder(tmp_path / "logging", **{"train.py": LOGGING_SCRIPT})
    job = ml_client.jobs.create_or_update(command(code=str(code), command="python train.py", environment=ENV))
    assert helpers.wait_for_status(ml_client, job.name) == "Completed"
    return job.name


def test_a_model_a_job_logged_the_mlflow_3_way_registers_from_the_job_its_run_and_its_model_id(ml_client, mlflow_client, logging_job):
    import mlflow.pyfunc

    experiment = mlflow_client.get_run(logging_job).info.experiment_id
    (linked,) = [m for m in mlflow_client.search_logged_models([experiment]) if m.name == "linked"]
    from_job = ml_client.models.create_or_update(
        Model(name="from-job", path=f"azureml://jobs/{logging_job}/outputs/artifacts/paths/model/", type="mlflow_model")
    )
    from_run = ml_client.models.create_or_update(Model(name="from-run", path=f"runs:/{logging_job}/linked", type="mlflow_model"))
    from_id = ml_client.models.create_or_update(Model(name="from-id", path=f"models:/{linked.model_id}", type="mlflow_model"))
    for model, folder_name in ((from_job, "model"), (from_run, "linked"), (from_id, "linked")):
        assert (model.version, model.job_name) == ("1", logging_job)
        assert stored(ml_client, model).name == folder_name  # named as the model, not MLflow's 'artifacts' folder
        assert mlflow_client.get_model_version(model.name, "1").run_id == logging_job
        predictions = mlflow.pyfunc.load_model(str(stored(ml_client, model))).predict(ROWS)
        assert list(predictions) == list(LogisticRegression().fit(ROWS, LABELS).predict(ROWS))
    assert from_run.path == from_id.path  # one model, reached two ways


def test_a_name_a_job_neither_wrote_nor_logged_is_not_found_and_a_path_out_of_its_model_is_refused(ml_client, logging_job):
    with pytest.raises(ResourceNotFoundError, match=r"'nothing'.*Known: .*model linked, model model"):
        ml_client.models.create_or_update(Model(name="x", path=f"runs:/{logging_job}/nothing", type="custom_model"))
    with pytest.raises(LocalMLValidationError, match=f"The path in model 'model' of run '{logging_job}' '../x' leads outside"):
        ml_client.models.create_or_update(Model(name="x", path=f"runs:/{logging_job}/model/../x", type="custom_model"))
    assert list(ml_client.models.list()) == []


def test_a_models_uri_that_names_no_logged_model_is_refused_saying_which_uri_to_use(ml_client):
    with pytest.raises(ResourceNotFoundError, match="Logged model 'm-0123456789abcdef'"):
        ml_client.models.create_or_update(Model(name="x", path="models:/m-0123456789abcdef", type="mlflow_model"))
    with pytest.raises(LocalMLValidationError, match=r"Give models:/<model_id>.*azureml:<name>:<version>"):
        ml_client.models.create_or_update(Model(name="x", path="models:/clf/1", type="mlflow_model"))


# --------------------------------------------------------------------------- MLflow -> ml_client.models

def test_a_model_registered_with_mlflow_is_visible_to_ml_client_and_usable_as_a_model(ml_client, mlflow_client, tmp_path, code_dir, helpers):
    import mlflow
    import mlflow.pyfunc

    run_id = log_a_model(mlflow_client, tmp_path)
    registered = mlflow.register_model(f"runs:/{run_id}/model", "outside", tags={"origin": "mlflow"})
    assert registered.source.startswith("models:/m-")  # MLflow 3: the run's logged model, not a folder of run artifacts

    model = ml_client.models.get("outside", version="1")
    assert (model.version, model.type, model.tags, model.job_name) == ("1", "mlflow_model", {"origin": "mlflow"}, run_id)
    assert [(m.name, m.version) for m in ml_client.models.list()] == [("outside", "1")]
    assert ml_client.models.resolve_reference("azureml:outside@latest")["version"] == "1"

    ml_client.models.download("outside", "1", download_path=tmp_path / "downloaded")
    (downloaded,) = (tmp_path / "downloaded" / "outside").iterdir()
    assert list(mlflow.pyfunc.load_model(str(downloaded)).predict(ROWS)) == list(LogisticRegression().fit(ROWS, LABELS).predict(ROWS))

    job = ml_client.jobs.create_or_update(command(
        code=str(code_dir), command="python seen.py ${{inputs.model}}", environment=ENV,
        inputs={"model": Input(type="mlflow_model", path="azureml:outside:1")},
    ))
    assert helpers.wait_for_status(ml_client, job.name) == "Completed"
    ml_client.jobs.download(job.name, download_path=tmp_path / "job")
    seen = json.loads((tmp_path / "job" / "artifacts" / "outputs" / "seen.json").read_text())
    assert "MLmodel" in seen[0]["listing"]


def test_a_folder_registered_with_the_mlflow_client_is_copied_in_as_a_custom_model(ml_client, mlflow_client, tmp_path):
    source = folder(tmp_path / "weights", **{"w.bin": "weights"})
    mlflow_client.create_registered_model("plain")
    mlflow_client.create_model_version("plain", source=str(source), description="by hand")
    model = ml_client.models.get("plain", label="latest")
    assert (model.version, model.type, model.description, model.job_name) == ("1", "custom_model", "by hand", None)
    (source / "w.bin").write_text("changed")
    assert (stored(ml_client, model) / "w.bin").read_text() == "weights"
    # imported once: its tags changed here now change in MLflow, as for a version registered here
    model.tags = {"reviewed": "yes"}
    ml_client.models.create_or_update(model)
    assert mlflow_client.get_model_version("plain", "1").tags == {"reviewed": "yes"}
    assert [m.version for m in ml_client.models.list(name="plain")] == ["1"]


def test_a_version_mlflow_cannot_import_is_skipped_without_breaking_reads(ml_client, mlflow_client, tmp_path, caplog):
    mlflow_client.create_registered_model("gone")
    mlflow_client.create_model_version("gone", source=str(tmp_path / "never-written"))
    ml_client.models.create_or_update(Model(name="fine", path=str(folder(tmp_path / "m", **{"w.bin": "1"}))))
    assert [m.name for m in ml_client.models.list()] == ["fine"]
    assert "gone:1" in caplog.text and "cannot be imported" in caplog.text


def test_a_version_mlflow_registered_under_a_name_azure_refuses_stays_out_of_the_workspace(ml_client, mlflow_client, tmp_path, caplog):
    # MLflow's registry takes names Azure refuses; a download of one would write wherever its name points
    mlflow_client.create_registered_model("my model")
    mlflow_client.create_model_version("my model", source=str(folder(tmp_path / "w", **{"w.bin": "1"})))
    assert list(ml_client.models.list()) == []
    assert "my model:1" in caplog.text and "Model name 'my model' is not valid" in caplog.text


def test_registrations_through_both_doors_at_once_never_share_a_number(ml_client, mlflow_client, tmp_path):
    """Each door numbers max + 1 on its own; the claim in MLflow decides, so every number names one model on both sides."""
    mlflow_client.create_registered_model("race")
    per_door = 6

    def through_ml_client(client: LocalMLClient) -> None:
        for i in range(per_door):
            client.models.create_or_update(Model(name="race", path=str(folder(tmp_path / f"azure-{i}", **{"who": f"azure-{i}"}))))

    def through_mlflow() -> None:
        for i in range(per_door):
            mlflow_client.create_model_version("race", source=str(folder(tmp_path / f"mlflow-{i}", **{"who": f"mlflow-{i}"})))

    doors = [threading.Thread(target=through_ml_client, args=(LocalMLClient(ml_client.root),)), threading.Thread(target=through_mlflow)]
    for door in doors:
        door.start()
    for door in doors:
        door.join()

    versions = {m.version: (stored(ml_client, m) / "who").read_text() for m in ml_client.models.list(name="race")}
    assert sorted(versions.values()) == sorted([f"azure-{i}" for i in range(per_door)] + [f"mlflow-{i}" for i in range(per_door)])
    from mlflow.utils.file_utils import local_file_uri_to_path

    in_mlflow = {str(v.version): (Path(local_file_uri_to_path(v.source)) / "who").read_text() for v in mlflow_client.search_model_versions("name = 'race'")}
    assert in_mlflow == versions


def test_clients_reading_at_once_import_a_version_once(ml_client, mlflow_client, tmp_path):
    """Each client (as each process would) finds the version missing and imports it; the catalog keeps one."""
    mlflow_client.create_registered_model("shared")
    mlflow_client.create_model_version("shared", source=str(folder(tmp_path / "m", **{"w.bin": "1"})))
    start = threading.Barrier(4)
    paths = []

    def read(client: LocalMLClient) -> None:
        start.wait()
        paths.append(client.models.get("shared", version="1").path)

    readers = [threading.Thread(target=read, args=(LocalMLClient(ml_client.root),)) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert len(paths) == 4 and len(set(paths)) == 1
    assert len(ml_client._workspace.catalog.list_assets("model", "shared", include_archived=True)) == 1
    assert (stored(ml_client, ml_client.models.get("shared", version="1")) / "w.bin").read_text() == "1"


def test_a_workspace_from_before_the_mirror_gets_its_versions_into_mlflow_on_the_next_read(ml_client, mlflow_client, tmp_path):
    catalog = ml_client._workspace.catalog
    path = ml_client._workspace.upload(folder(tmp_path / "old", **{"w.bin": "old"}))
    with catalog.transaction() as db:  # written as localml wrote models before it kept MLflow's registry in step
        catalog.insert_asset(db, "model", "old", "1", {"path": path, "type": "custom_model", "tags": {"age": "old"}})
    assert [m.version for m in ml_client.models.list(name="old")] == ["1"]
    assert mlflow_client.get_model_version("old", "1").tags == {"age": "old"}


def test_reading_and_registering_models_does_not_load_mlflow_once_its_tables_exist(ml_client, mlflow_client, tmp_path):
    mlflow_client.search_registered_models()  # MLflow makes its tables on first use, as the first job does
    weights = folder(tmp_path / "m", **{"w.bin": "1"})
    script = (
        "import sys\nfrom azure.ai.ml.entities import Model\nfrom localml import LocalMLClient\n"
        "client = LocalMLClient(sys.argv[1])\n"
        "model = client.models.create_or_update(Model(name='quick', path=sys.argv[2], tags={'a': '1'}))\n"
        "model.tags['b'] = '2'\nclient.models.create_or_update(model)\nclient.models.archive('quick', version='1')\n"
        "list(client.models.list()); client.models.get('quick', version='1')\n"
        "print('mlflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(ml_client.root), str(weights)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    version = mlflow_client.get_model_version("quick", "1")
    assert (version.tags, version.current_stage) == ({"a": "1", "b": "2"}, "Archived")
