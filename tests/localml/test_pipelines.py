"""localml pipeline jobs and components: each node is a real child command job, outputs feed inputs.

The node scripts are tiny and import nothing heavy; each writes what it read into its output, so a
downstream file's text shows the path the data took. Timing files show which nodes ran at once.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from azure.ai.ml import Input, Output, command, dsl, load_component, load_job
from azure.ai.ml.entities import AmlCompute, CommandComponent, PipelineJob
from azure.ai.ml.sweep import Choice
from azure.core.exceptions import ResourceNotFoundError

from localml import LocalMLClient
from localml.errors import LocalMLValidationError, UnsupportedFeatureError

ENV = "AzureML-sklearn-1.5@latest"
PIPELINE_TIMEOUT = 240.0

SCRIPTS = {
    "prep.py": """
        import argparse, pathlib
        parser = argparse.ArgumentParser()
        parser.add_argument("--raw", required=True)
        parser.add_argument("--factor", required=True)
        parser.add_argument("--out", required=True)
        args = parser.parse_args()
        text = "".join(p.read_text().strip() for p in sorted(pathlib.Path(args.raw).iterdir()))
        pathlib.Path(args.out, "data.txt").write_text(f"prep{args.factor}({text})")
    """,
    # sleeps, so two trainings can be seen running at once; writes a "model" and when it ran
    "train.py": """
        import argparse, json, pathlib, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--data", required=True)
        parser.add_argument("--tag", required=True)
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--model", required=True)
        args = parser.parse_args()
        start = time.time()
        time.sleep(args.seconds)
        data = pathlib.Path(args.data, "data.txt").read_text()
        pathlib.Path(args.model, "model.txt").write_text(f"train-{args.tag}({data})")
        pathlib.Path(args.model, "timing.json").write_text(json.dumps({"start": start, "end": time.time()}))
    """,
    "score.py": """
        import argparse, json, pathlib, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--a", required=True)
        parser.add_argument("--b", required=True)
        parser.add_argument("--mode", required=True)
        parser.add_argument("--out", required=True)
        args = parser.parse_args()
        models = [pathlib.Path(m, "model.txt").read_text() for m in (args.a, args.b)]
        pathlib.Path(args.out, "result.txt").write_text(f"score-{args.mode}[{' + '.join(models)}]")
        pathlib.Path(args.out, "timing.json").write_text(json.dumps({"start": time.time()}))
    """,
    # writes its pid to its output, then sleeps
    "sleep.py": """
        import argparse, os, pathlib, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--state", required=True)
        args = parser.parse_args()
        pathlib.Path(args.state, "pid").write_text(str(os.getpid()))
        print("sleeping", flush=True)
        time.sleep(args.seconds)
    """,
}

PREP_YAML = """
$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
name: prep_data
version: 1
type: command
inputs:
  raw: {type: uri_folder}
  factor: {type: integer, default: 2}
outputs:
  prepped: {type: path}
code: ./src
environment: azureml:AzureML-sklearn-1.5@latest
command: python prep.py --raw ${{inputs.raw}} --factor ${{inputs.factor}} --out ${{outputs.prepped}}
"""

SCORE_YAML = """
name: score
type: command
inputs:
  model_a: {type: custom_model}
  model_b: {type: custom_model}
outputs:
  scores: {type: uri_folder}
code: ./src
environment: azureml:AzureML-sklearn-1.5@latest
command: python score.py --a ${{inputs.model_a}} --b ${{inputs.model_b}} --mode MODE --out ${{outputs.scores}}
"""

SLEEP_YAML = """
name: sleep_step
type: command
inputs:
  seconds: {type: number}
  wait_for: {type: uri_folder, optional: true}
outputs:
  state: {type: uri_folder}
code: ./src
environment: azureml:AzureML-sklearn-1.5@latest
command: python sleep.py --seconds ${{inputs.seconds}} --state ${{outputs.state}}
"""

# a pipeline in YAML that names a registered component by reference, as Azure's CLI examples do
SLEEP_PIPELINE_YAML = """
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: sleep then sleep
settings:
  default_compute: azureml:cpu-cluster
inputs:
  seconds: 60
jobs:
  sleeper:
    type: command
    component: azureml:sleep_step:1
    inputs:
      seconds: ${{parent.inputs.seconds}}
  after:
    type: command
    component: azureml:sleep_step@latest
    inputs:
      seconds: 1
      wait_for: ${{parent.jobs.sleeper.outputs.state}}
"""


@pytest.fixture
def project(tmp_path):
    """A project folder: the node scripts in src/, component YAMLs beside it, and a small raw data folder."""
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    for name, text in SCRIPTS.items():
        (folder / "src" / name).write_text(textwrap.dedent(text).lstrip())
    (folder / "prep.yml").write_text(PREP_YAML)
    for mode in ("v1", "v2"):
        (folder / f"score_{mode}.yml").write_text(SCORE_YAML.replace("MODE", mode))
    (folder / "sleep.yml").write_text(SLEEP_YAML)
    (folder / "raw").mkdir()
    (folder / "raw" / "a.txt").write_text("hello")
    return folder


@pytest.fixture
def cluster(ml_client):
    ml_client.compute.begin_create_or_update(AmlCompute(name="cpu-cluster", max_instances=4)).result()
    return "cpu-cluster"


def train_builder(project):
    """An inline command() node: the component the SDK builds for it has no name (anonymous)."""
    return command(
        command="python train.py --data ${{inputs.data}} --tag ${{inputs.tag}} --seconds ${{inputs.seconds}} --model ${{outputs.model}}",
        inputs={"data": Input(type="path"), "tag": "x", "seconds": 0},
        outputs={"model": Output(type="custom_model")},
        code=str(project / "src"),
        environment=ENV,
    )


def sdk_validated(pipeline_job: PipelineJob) -> PipelineJob:
    result = pipeline_job._validate()
    assert result.passed, result.error_messages
    return pipeline_job


def children(ml_client, name) -> dict:
    """The pipeline's child jobs by node name."""
    return {job.display_name: job for job in ml_client.jobs.list(parent_job_name=name)}


def output_file(ml_client, job: str, output: str, file: str) -> str:
    return (ml_client._workspace.resolve_uri(f"azureml://jobs/{job}/outputs/{output}") / file).read_text()


def test_a_fan_out_fan_in_pipeline_runs_its_nodes_in_order_and_wires_outputs_to_inputs(ml_client, project, cluster, tmp_path, capsys):
    prep = load_component(source=str(project / "prep.yml"))
    ml_client.components.create_or_update(load_component(source=str(project / "score_v1.yml")))
    ml_client.components.create_or_update(load_component(source=str(project / "score_v2.yml")))
    score = ml_client.components.get("score")  # the latest: v2
    train = train_builder(project)

    @dsl.pipeline(default_compute=cluster, description="prep, two trainings at once, score")
    def train_and_score(raw_data, factor=3):
        prepped = prep(raw=raw_data, factor=factor)
        train_a = train(data=prepped.outputs.prepped, tag="a", seconds=3)
        train_b = train(data=prepped.outputs.prepped, tag="b", seconds=3)
        scored = score(model_a=train_a.outputs.model, model_b=train_b.outputs.model)
        return {"scores": scored.outputs.scores}

    pipeline_job = sdk_validated(train_and_score(raw_data=Input(type="uri_folder", path=str(project / "raw"))))
    submitted = ml_client.jobs.create_or_update(pipeline_job, experiment_name="pipelines")
    assert isinstance(submitted, PipelineJob) and submitted.status == "NotStarted"
    name = submitted.name

    ml_client.jobs.stream(name)  # follows the driver's log until the pipeline ends
    log = capsys.readouterr().out
    pipeline = ml_client.jobs.get(name)
    assert pipeline.status == "Completed", pipeline.properties["localml.error"]
    assert isinstance(pipeline, PipelineJob) and set(pipeline.jobs) == {"prepped", "train_a", "train_b", "scored"}
    assert sdk_validated(pipeline)._to_rest_object().properties.job_type == "Pipeline"  # what localml returns, Azure accepts
    assert pipeline.inputs["raw_data"].path.startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    for node in ("prepped", "train_a", "train_b", "scored"):
        assert f"node {node}: started job {name}_{node}" in log and f"node {node}: Completed" in log

    nodes = children(ml_client, name)
    assert {node: job.name for node, job in nodes.items()} == {node: f"{name}_{node}" for node in pipeline.jobs}
    assert all(job.status == "Completed" and job.compute == cluster for job in nodes.values())
    assert all(job.tags["localml.pipeline_node"] == node and job.experiment_name == "pipelines" for node, job in nodes.items())
    assert nodes["train_a"].inputs["data"].path == f"azureml://datastores/workspaceblobstore/paths/azureml/{name}_prepped/prepped/"
    assert nodes["train_a"].inputs["data"].type == "uri_folder"  # Azure's untyped 'path' ports: a path output is a folder
    assert nodes["scored"].inputs["model_b"].type == "custom_model"

    # the data went prep -> both trainings -> score; the pipeline's output is the score node's output
    expected = "score-v2[train-a(prep3(hello)) + train-b(prep3(hello))]"
    assert output_file(ml_client, name, "scores", "result.txt") == expected
    ml_client.jobs.download(name, download_path=tmp_path / "download", output_name="scores")
    assert (tmp_path / "download" / "named-outputs" / "scores" / "result.txt").read_text() == expected

    timings = {node: json.loads(output_file(ml_client, f"{name}_{node}", out, "timing.json"))
               for node, out in (("train_a", "model"), ("train_b", "model"), ("scored", "scores"))}
    a, b = timings["train_a"], timings["train_b"]
    assert a["start"] < b["end"] and b["start"] < a["end"], timings  # independent nodes ran at once
    assert timings["scored"]["start"] > max(a["end"], b["end"])  # the fan-in waited for both

    ml_client.jobs.download(name, download_path=tmp_path / "download")
    summary = json.loads((tmp_path / "download" / "artifacts" / "outputs" / "pipeline_summary.json").read_text())
    assert {node: (row["job"], row["status"]) for node, row in summary["nodes"].items()} == {
        node: (f"{name}_{node}", "Completed") for node in pipeline.jobs
    }


def test_components_are_versioned_assets_with_their_code_snapshotted(ml_client, project):
    score_v1 = load_component(source=str(project / "score_v1.yml"))
    first = ml_client.create_or_update(score_v1)  # MLClient.create_or_update routes a component too
    assert isinstance(first, CommandComponent) and (first.name, first.version) == ("score", "1")
    assert ml_client.components.create_or_update(load_component(source=str(project / "score_v1.yml"))).version == "1"  # same content
    (project / "src" / "score.py").write_text("print('edited after registration')\n")
    second = ml_client.components.create_or_update(load_component(source=str(project / "score_v2.yml")))
    assert second.version == "2"

    assert ml_client.components.get("score").version == "2"
    assert ml_client.components.get("score", label="latest").version == "2"
    old = ml_client.components.get("score", version="1")
    assert "--mode v1" in old.command and old.id.endswith("/components/score/versions/1")
    assert [c.version for c in ml_client.components.list(name="score")] == ["1", "2"]
    assert [(c.name, c.version) for c in ml_client.components.list()] == [("score", "2")]
    # the registered code is the snapshot taken at registration, not the file edited since
    code = ml_client._workspace.catalog.get_asset("code", old._to_dict()["code"].split(":")[1], "1")
    assert "score-" in (ml_client._workspace.resolve_uri(code["path"]) / "score.py").read_text()

    codeless = ml_client.components.create_or_update(command(name="echo_step", command="echo hi", environment=ENV).component)
    assert ml_client.components.get("echo_step").command == "echo hi" and codeless.code is None

    changed = load_component(source=str(project / "score_v2.yml"))
    changed.version = "1"
    with pytest.raises(LocalMLValidationError, match="already exists with other content"):
        ml_client.components.create_or_update(changed)
    with pytest.raises(LocalMLValidationError, match="needs a name"):
        ml_client.components.create_or_update(train_builder(project).component)
    with pytest.raises(ResourceNotFoundError, match="Known: 1, 2"):
        ml_client.components.get("score", version="3")


def test_a_registry_client_keeps_its_own_components_and_serves_no_jobs(ml_client, project):
    registry = LocalMLClient(ml_client.root, registry_name="azureml")
    assert registry.registry_name == "azureml" and ml_client.registry_name is None
    stored = registry.components.create_or_update(load_component(source=str(project / "prep.yml")))
    assert stored.id == "azureml://registries/azureml/components/prep_data/versions/1"
    assert registry.components.get("prep_data").version == "1"
    assert list(ml_client.components.list()) == []  # the workspace's components are its own
    with pytest.raises(UnsupportedFeatureError, match="registry client"):
        registry.jobs.list()


def test_a_failed_node_fails_the_pipeline_and_the_nodes_after_it_never_run(ml_client, project, cluster, helpers):
    train = train_builder(project)
    sleep = load_component(source=str(project / "sleep.yml"))
    # a component with no code folder: its command is all it runs
    fail = command(command="python -c 'raise ValueError(\"boom\")'", environment=ENV, outputs={"out": Output(type="uri_folder")})

    def failing_pipeline(continue_on_step_failure: bool, seconds: float):
        @dsl.pipeline(default_compute=cluster)
        def failing():
            broken = fail()
            after = train(data=broken.outputs.out, tag="after")  # noqa: F841 (dsl names the node after the variable)
            independent = sleep(seconds=seconds)  # noqa: F841 (reads nothing from the failed node)
        pipeline_job = failing()
        pipeline_job.settings.continue_on_step_failure = continue_on_step_failure
        return sdk_validated(pipeline_job)

    # two pipelines at once: by default the failure cancels the node still running, else that node runs on
    stopping = ml_client.jobs.create_or_update(failing_pipeline(False, seconds=60)).name
    continuing = ml_client.jobs.create_or_update(failing_pipeline(True, seconds=1)).name
    for name in (stopping, continuing):
        assert helpers.wait_for_status(ml_client, name, timeout=PIPELINE_TIMEOUT) == "Failed"
        error = ml_client.jobs.get(name).properties["localml.error"]
        assert f"Pipeline node 'broken' failed (job {name}_broken)" in error and "ValueError: boom" in error, error
        nodes = children(ml_client, name)
        assert set(nodes) == {"broken", "independent"} and nodes["broken"].status == "Failed"  # 'after' never started
    assert children(ml_client, stopping)["independent"].status == "Canceled"
    assert children(ml_client, continuing)["independent"].status == "Completed"


def test_canceling_a_pipeline_cancels_its_running_node_and_starts_no_other(ml_client, project, cluster, helpers, tmp_path):
    ml_client.components.create_or_update(load_component(source=str(project / "sleep.yml")))
    (tmp_path / "pipeline.yml").write_text(SLEEP_PIPELINE_YAML)
    name = ml_client.jobs.create_or_update(sdk_validated(load_job(tmp_path / "pipeline.yml"))).name
    sleeper = f"{name}_sleeper"
    helpers.wait_for(lambda: "sleeper" in children(ml_client, name), what="the sleeper node to start")
    helpers.wait_for_status(ml_client, sleeper, statuses=("Running",))
    pid_file = ml_client._workspace.resolve_uri(f"azureml://jobs/{sleeper}/outputs/state") / "pid"
    pid = int(helpers.wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the sleeper's pid"))

    ml_client.jobs.begin_cancel(name).result(timeout=60)

    assert ml_client.jobs.get(name).status == "Canceled"
    assert helpers.wait_for_status(ml_client, sleeper) == "Canceled"
    helpers.wait_for(lambda: helpers.process_gone(pid), what="the sleeper's process to end")
    assert list(children(ml_client, name)) == ["sleeper"]  # 'after' never started


def _pipeline_of(build):
    @dsl.pipeline(default_compute="cpu-cluster")
    def pipeline():
        build()
    return pipeline()


def _cycle(project):
    prep = load_component(source=str(project / "prep.yml"))

    @dsl.pipeline(default_compute="cpu-cluster")
    def pipeline():
        first = prep(raw=Input(type="uri_folder", path=str(project / "raw")))
        second = prep(raw=first.outputs.prepped)
        first.inputs.raw = second.outputs.prepped
    return pipeline()


def _sweep_node(project):
    train = train_builder(project)

    @dsl.pipeline(default_compute="cpu-cluster")
    def pipeline():
        swept = train(data=Input(type="uri_folder", path=str(project / "raw")), seconds=Choice([0, 1])).sweep(
            primary_metric="accuracy", goal="maximize", sampling_algorithm="random"
        )
        swept.set_limits(max_total_trials=2)
    return pipeline()


def _unknown_output(project):
    prep = load_component(source=str(project / "prep.yml"))
    train = train_builder(project)

    @dsl.pipeline(default_compute="cpu-cluster")
    def pipeline():
        prepped = prep(raw=Input(type="uri_folder", path=str(project / "raw")))  # noqa: F841
        trained = train(data="${{parent.jobs.prepped.outputs.nope}}")  # noqa: F841
    return pipeline()


def _unknown_pipeline_input(project):
    prep = load_component(source=str(project / "prep.yml"))
    return _pipeline_of(lambda: prep(raw="${{parent.inputs.nope}}"))


def _missing_input(project):
    prep = load_component(source=str(project / "prep.yml"))
    return _pipeline_of(lambda: prep())


def _missing_data(project):
    prep = load_component(source=str(project / "prep.yml"))
    return _pipeline_of(lambda: prep(raw=Input(type="uri_folder", path=str(project / "no-such-folder"))))


def _unknown_component(project):
    (project / "pipeline.yml").write_text(SLEEP_PIPELINE_YAML)
    return load_job(project / "pipeline.yml")


@pytest.mark.parametrize(
    "build, error, message",
    [
        (_unknown_output, LocalMLValidationError, r"node 'trained': input 'data' reads .*node 'prepped' has no output 'nope'"),
        (_unknown_pipeline_input, LocalMLValidationError, r"node 'prep_data'.*input 'raw' is bound to .*no input 'nope'"),
        (_cycle, LocalMLValidationError, r"first, second can never start.*cycle"),
        (_missing_input, LocalMLValidationError, r"node 'prep_data': input 'raw' of component 'prep_data' is required"),
        (_missing_data, LocalMLValidationError, r"node 'prep_data': Input 'raw' .*does not exist"),
        (_sweep_node, UnsupportedFeatureError, r"pipeline node 'swept' of type sweep"),
        (_unknown_component, ResourceNotFoundError, r"node 'sleeper': Component 'sleep_step' version '1' was not found"),
    ],
    ids=["unknown-node-output", "unknown-pipeline-input", "cycle", "missing-required-input", "missing-data", "sweep-node", "unknown-component"],
)
def test_bad_pipelines_are_rejected_before_any_job_exists(ml_client, project, cluster, build, error, message):
    with pytest.raises(error, match=message):
        ml_client.jobs.create_or_update(build(project))
    assert list(ml_client.jobs.list()) == []
