"""The whole loop, as a user runs it: drifted data -> monitor -> drift event -> retrain -> promotion -> promotion
event -> deploy (a safe rollout) -> the new model served, through `amlflows up` (a Prefect server, the
deployments, a real process worker), timed step by step.

    python benchmarks/bench_loop.py [--max-trials 2] [--insights error_analysis] [--hold-seconds 20] [--rate 20]

On a fresh stack and workspace: the diabetes sample is registered as azureml:diabetes:1 with a model
trained on it (the champion to beat; its promotion triggers deploy, which serves it on blue), and a copy
with PlasmaGlucose shifted by 40 as azureml:diabetes:2. The triggered retraining reviews both models on the
review rows shifted the same way (models are judged on the data as it is now), where the candidate trained
on the drifted data beats the champion. From the decision on, a client sends steady one-row requests to the
endpoint and notes which deployment answers each. The monitor deployment is run through the API. Prints the time
from the monitor run's submission to the decision and to the new model's first answer, and each step:
monitor, the events until the triggered runs start, retrain's subflows and tasks, deploy's tasks and its
rollout steps (from the run's rollout-timeline artifact).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RAI_DATA = REPO / "examples" / "data" / "diabetes-rai"
DIABETES = REPO / "examples" / "data" / "diabetes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_data(root: Path, workspace: str) -> None:
    import pandas as pd
    from azure.ai.ml.entities import Data

    from tasks.workspace import get_client

    client = get_client(workspace)
    frame = pd.read_csv(DIABETES / "diabetes.csv")
    client.data.create_or_update(Data(name="diabetes", path=str(DIABETES), type="mltable"))
    drifted = root / "drifted"
    drifted.mkdir()
    frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40).to_csv(drifted / "diabetes.csv", index=False)
    (drifted / "MLTable").write_text((DIABETES / "MLTable").read_text())
    client.data.create_or_update(Data(name="diabetes", path=str(drifted), type="mltable"))


def drifted_review_data(root: Path) -> tuple[str, str]:
    """The review's train and test rows with PlasmaGlucose shifted by 40, as the drifted data version."""
    import pandas as pd

    folders = []
    for part in ("train", "test"):
        source, target = RAI_DATA / part, root / f"review-{part}"
        target.mkdir()
        for csv in source.glob("*.csv"):
            frame = pd.read_csv(csv)
            frame.assign(PlasmaGlucose=frame["PlasmaGlucose"] + 40).to_csv(target / csv.name, index=False)
        (target / "MLTable").write_text((source / "MLTable").read_text())
        folders.append(str(target))
    return folders[0], folders[1]


class Client(threading.Thread):
    """Steady one-row requests to the endpoint, as a user's application sends them: for each answer, when it came,
    its status and the deployment that gave it (the router's ``azureml-model-deployment`` header)."""

    def __init__(self, scoring_uri: str, key: str, rows, rate: float):
        super().__init__(daemon=True)
        self.url, self.key, self.pause = scoring_uri, key, 1 / rate
        self.bodies = [json.dumps({"input_data": json.loads(rows.iloc[[i]].to_json(orient="split"))}).encode()
                       for i in range(len(rows))]
        self.answers: list[tuple[float, int, str | None]] = []
        self.running = True

    def run(self) -> None:
        sent = 0
        while self.running:
            request = urllib.request.Request(self.url, data=self.bodies[sent % len(self.bodies)], headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
                    self.answers.append((time.monotonic(), answer.status, answer.headers.get("azureml-model-deployment")))
            except urllib.error.HTTPError as error:
                with error:  # it holds the connection
                    self.answers.append((time.monotonic(), error.code, error.headers.get("azureml-model-deployment")))
            except OSError:
                self.answers.append((time.monotonic(), 0, None))
            sent += 1
            time.sleep(self.pause)

    def stop(self) -> list[tuple[float, int, str | None]]:
        self.running = False
        if self.is_alive():
            self.join(timeout=15)
        return self.answers


def set_trigger_parameters(client, deployment_id, parameters: dict) -> None:
    """Add ``parameters`` to those the deployment's trigger passes (small budgets); the rest stay as prefect.yaml has them."""
    from prefect.events.schemas.automations import AutomationCore

    (automation,) = [a for a in client.read_automations() if a.actions[0].deployment_id == deployment_id]
    automation.actions[0].parameters["params"].update(parameters)
    # (the client's update_automation sends owner_resource, which this server's update schema refuses)
    body = AutomationCore(**automation.model_dump(exclude={"id"})).model_dump(mode="json", exclude={"owner_resource"})
    client._client.put(f"/automations/{automation.id}", json=body).raise_for_status()


def runs_of(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def new_run(client, deployment_id, known: set, timeout: float = 300):
    """The first run of the deployment that is not in ``known`` (a triggered one), once it exists."""
    deadline = time.monotonic() + timeout
    while not (runs := [r for r in runs_of(client, deployment_id) if r.id not in known]):
        if time.monotonic() > deadline:
            raise SystemExit(f"no new run of deployment {deployment_id} within {timeout:.0f} s: did the trigger fire?")
        time.sleep(0.2)
    return runs[0]


def task_durations(client, run) -> list[tuple[str, float]]:
    from prefect.client.schemas.filters import FlowRunFilter

    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))
    return [(t.name, (t.end_time - t.start_time).total_seconds())
            for t in sorted((t for t in tasks if t.start_time and t.end_time), key=lambda t: t.start_time)]


def rollout_steps(client, run) -> list[list[str]]:
    """The rows of the deploy run's rollout timeline (step, traffic, mirror, seconds, ... verdict)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]), key=ArtifactFilterKey(any_=["rollout-timeline"])))
    rows = [line.strip("|").split(" | ") for line in artifact.data.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # the header row first


def wait_final(client, run_id, timeout: float = 1800):
    deadline = time.monotonic() + timeout
    while (run := client.read_flow_run(run_id)).state is None or not run.state.is_final():
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {run.name} still {run.state} after {timeout:.0f} s")
        time.sleep(0.5)
    if not run.state.is_completed():
        raise SystemExit(f"flow run {run.name} ended {run.state}")
    return run


def delete_endpoints(workspace: str) -> None:
    """Stop the workspace's online endpoints (their routers and serving processes): `down` leaves them serving."""
    from tasks.workspace import get_client

    client = get_client(workspace)
    for endpoint in client.online_endpoints.list():
        client.online_endpoints.begin_delete(endpoint.name).result()


def seconds(run) -> float:
    return (run.end_time - run.start_time).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-trials", type=int, default=2)
    parser.add_argument("--insights", nargs="+", default=["error_analysis"])
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 50, 100], help="the rollout's traffic steps")
    parser.add_argument("--mirror-percent", type=int, default=10)
    parser.add_argument("--hold-seconds", type=float, default=20, help="each traffic step's and the mirror's window (the flow's default: 60)")
    parser.add_argument("--rate", type=float, default=20, help="the client's requests a second, at most")
    args = parser.parse_args()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    import pandas as pd

    from amlflows.stack import Stack, down, up
    from tasks.workspace import get_client as get_ml_client

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        root = Path(folder)
        stack = Stack(prefect_port=free_port(), mlflow_port=free_port(), localml_root=root / "localml", state=root / "state")
        workspace = f"local:{stack.localml_root.resolve()}"
        client_thread = None
        try:
            os.chdir(REPO)  # up() deploys prefect.yaml from here
            up(stack)
            register_data(root, workspace)
            review_train, review_test = drifted_review_data(root)
            quick = dict(
                workspace=workspace, compute="local", max_trials=args.max_trials, allowed_algorithms=["LightGBM"], timeout_minutes=1,
                insights=args.insights, review_train_data=str(RAI_DATA / "train"), review_test_data=str(RAI_DATA / "test"),
                thresholds={"primary_metric": "AUC_weighted", "primary_metric_threshold": 0.85, "max_fairness_gap": 0.15},
            )
            plan = {"smoke_rows": 20, "mirror_percent": args.mirror_percent, "mirror_seconds": args.hold_seconds,
                    "steps": args.steps, "hold_seconds": args.hold_seconds, "check_seconds": 2}
            with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
                retrain = client.read_deployment_by_name("retrain/retrain")
                monitor = client.read_deployment_by_name("monitor/monitor")
                deploy = client.read_deployment_by_name("deploy/deploy")
                set_trigger_parameters(client, deploy.id, {"plan": plan})
                # the champion to beat: a retraining on the reference data, run by hand; its promotion triggers
                # deploy, which serves it on blue
                champion = client.create_flow_run_from_deployment(retrain.id, parameters={"params": {**quick, "data": "azureml:diabetes:1"}})
                wait_final(client, champion.id)
                first_deploy = wait_final(client, new_run(client, deploy.id, set()).id)
                set_trigger_parameters(client, retrain.id, {**{k: v for k, v in quick.items() if k != "workspace"},
                                                            "review_train_data": review_train, "review_test_data": review_test})

                ml = get_ml_client(workspace)
                endpoint = ml.online_endpoints.get("diabetes-ep")
                old = max(endpoint.traffic, key=endpoint.traffic.get)
                rows = pd.read_csv(Path(review_test) / "diabetes-test.csv").drop(columns="Diabetic").head(50)
                client_thread = Client(endpoint.scoring_uri, ml.online_endpoints.get_keys("diabetes-ep").primary_key, rows, args.rate)

                started = time.monotonic()
                run = client.create_flow_run_from_deployment(monitor.id, parameters={"params": {"workspace": workspace, "data": "azureml:diabetes:2"}})
                monitored = wait_final(client, run.id)
                retrained = wait_final(client, new_run(client, retrain.id, {champion.id}).id)
                decided = time.monotonic() - started
                # the client starts now, so the retraining's figures stay comparable with the runs before it; the
                # deploy run its promotion triggers starts seconds later (the worker polls every 10 s)
                client_thread.start()
                candidate = max(ml.models.list(name="diabetes-baseline"), key=lambda m: int(m.version))
                if candidate.tags.get("champion") != "true":
                    raise SystemExit(f"the retraining did not promote: {candidate.tags.get('retrain_decision')}")
                deployed = wait_final(client, new_run(client, deploy.id, {first_deploy.id}).id)
                served = time.monotonic() - started
                time.sleep(2)  # a few answers from the new deployment alone
                answers = client_thread.stop()
                endpoint = ml.online_endpoints.get("diabetes-ep")
                new = max(endpoint.traffic, key=endpoint.traffic.get)
                if endpoint.tags.get(f"model.{new}") != f"azureml:{candidate.name}:{candidate.version}":
                    raise SystemExit(f"the endpoint's {new} serves {endpoint.tags.get(f'model.{new}')}, not the candidate")
                children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[retrained.id])))
                children = [(client.read_flow(child.flow_id).name, child) for child in children]
                retrain_tasks = task_durations(client, retrained)
                deploy_tasks = task_durations(client, deployed)
                steps = rollout_steps(client, deployed)
        finally:
            if client_thread is not None:
                client_thread.stop()
            down(stack)  # workers first: no deploy run goes on starting serving processes
            delete_endpoints(workspace)

    event_to_run = (retrained.start_time - monitored.end_time).total_seconds()
    first_new = min((t for t, status, deployment in answers if status == 200 and deployment == new), default=float("nan")) - started
    last_old = max((t for t, status, deployment in answers if deployment == old), default=float("nan")) - started
    during = [(status, deployment) for t, status, deployment in answers]
    failed = sum(status != 200 for status, _ in during)
    print(f"\ndrift -> decision: {decided:.1f} s (monitor run submitted -> retrain run finished)")
    print(f"drift -> first answer from the new model: {first_new:.1f} s (its first step's traffic; a mirrored answer never reaches the client)")
    print(f"drift -> the old model's last answer: {last_old:.1f} s (the new one takes all traffic from the last step on)")
    print(f"drift -> rollout done: {served:.1f} s (deploy run finished: last step held, old deployment deleted)")
    print(f"  monitor run waits to start  {(monitored.start_time - monitored.created).total_seconds():6.1f} s (worker poll, process start)")
    print(f"  monitor flow run            {seconds(monitored):6.1f} s")
    print(f"  event -> retrain run starts {event_to_run:6.1f} s (automation, scheduling, worker poll, process start)")
    print(f"  retrain flow run            {seconds(retrained):6.1f} s  {candidate.tags.get('retrain_decision')}")
    for name, child in sorted(children, key=lambda pair: pair[1].start_time):
        print(f"    subflow {name:24s} {seconds(child):6.1f} s")
    for name, took in retrain_tasks:
        print(f"    task {name:27s} {took:6.1f} s")
    print(f"  event -> deploy run starts  {(deployed.start_time - retrained.end_time).total_seconds():6.1f} s")
    print(f"  deploy flow run             {seconds(deployed):6.1f} s  ({old} -> {new})")
    for name, took in deploy_tasks:
        print(f"    task {name:27s} {took:6.1f} s")
    print("  rollout steps (the run's rollout-timeline artifact):")
    for row in steps:
        print(f"    {row[0]:14s} {row[3]:>6s} s  traffic {row[1] or '-':18s} mirror {row[2] or '-':10s} new: {row[4]} requests, p95 {row[6] or '-'} ms; {row[-1]}")
    print(f"  client: {len(during)} requests from the decision on, {failed} failed; "
          f"{sum(d == old for _, d in during)} answered by {old}, {sum(d == new for _, d in during)} by {new}")


if __name__ == "__main__":
    main()
