"""The whole loop, as a user runs it: drifted data -> monitor -> drift event -> retrain -> promotion decision,
through `amlflows up` (a Prefect server, the deployments, a real process worker), timed step by step.

    python benchmarks/bench_loop.py [--max-trials 2] [--insights error_analysis]

On a fresh stack and workspace: the diabetes sample is registered as azureml:diabetes:1 with a model
trained on it (the champion to beat), and a copy with PlasmaGlucose shifted by 40 as azureml:diabetes:2.
The monitor deployment is run through the API. Prints the time from the monitor run's start to the
decision, and each step: monitor, the event until the triggered run starts, and retrain's subflows and tasks.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
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


def wait_final(client, run_id, timeout: float = 1800):
    deadline = time.monotonic() + timeout
    while (run := client.read_flow_run(run_id)).state is None or not run.state.is_final():
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {run.name} still {run.state} after {timeout:.0f} s")
        time.sleep(0.5)
    if not run.state.is_completed():
        raise SystemExit(f"flow run {run.name} ended {run.state}")
    return run


def seconds(run) -> float:
    return (run.end_time - run.start_time).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-trials", type=int, default=2)
    parser.add_argument("--insights", nargs="+", default=["error_analysis"])
    args = parser.parse_args()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from amlflows.stack import Stack, down, up

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as folder:
        root = Path(folder)
        stack = Stack(prefect_port=free_port(), mlflow_port=free_port(), localml_root=root / "localml", state=root / "state")
        workspace = f"local:{stack.localml_root.resolve()}"
        try:
            os.chdir(REPO)  # up() deploys prefect.yaml from here
            up(stack)
            register_data(root, workspace)
            quick = dict(
                workspace=workspace, compute="local", max_trials=args.max_trials, allowed_algorithms=["LightGBM"], timeout_minutes=1,
                insights=args.insights, review_train_data=str(RAI_DATA / "train"), review_test_data=str(RAI_DATA / "test"),
                thresholds={"primary_metric": "AUC_weighted", "primary_metric_threshold": 0.85, "max_fairness_gap": 0.15},
            )
            with temporary_settings({PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
                retrain = client.read_deployment_by_name("retrain/retrain")
                monitor = client.read_deployment_by_name("monitor/monitor")
                # the champion to beat: a retraining on the reference data, run by hand
                champion = client.create_flow_run_from_deployment(retrain.id, parameters={"params": {**quick, "data": "azureml:diabetes:1"}})
                wait_final(client, champion.id)
                (automation,) = [a for a in client.read_automations() if a.actions[0].deployment_id == retrain.id]
                automation.actions[0].parameters["params"].update({k: v for k, v in quick.items() if k != "workspace"})
                body = AutomationCore(**automation.model_dump(exclude={"id"})).model_dump(mode="json", exclude={"owner_resource"})
                client._client.put(f"/automations/{automation.id}", json=body).raise_for_status()

                started = time.monotonic()
                run = client.create_flow_run_from_deployment(monitor.id, parameters={"params": {"workspace": workspace, "data": "azureml:diabetes:2"}})
                monitored = wait_final(client, run.id)
                triggered = None
                while not triggered:
                    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retrain.id])))
                    triggered = [r for r in runs if r.id != champion.id]
                    time.sleep(0.2)
                retrained = wait_final(client, triggered[0].id)
                total = time.monotonic() - started
                children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[retrained.id])))
                children = [(client.read_flow(child.flow_id).name, child) for child in children]
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [retrained.id]}))
        finally:
            down(stack)

    event_to_run = (retrained.start_time - monitored.end_time).total_seconds()
    print(f"\ndrift -> decision: {total:.1f} s (monitor run submitted -> retrain run finished)")
    print(f"  monitor run waits to start  {(monitored.start_time - monitored.created).total_seconds():6.1f} s (worker poll, process start)")
    print(f"  monitor flow run            {seconds(monitored):6.1f} s")
    print(f"  event -> retrain run starts {event_to_run:6.1f} s (automation, scheduling, worker poll, process start)")
    print(f"  retrain flow run            {seconds(retrained):6.1f} s")
    for name, child in sorted(children, key=lambda pair: pair[1].start_time):
        print(f"    subflow {name:24s} {seconds(child):6.1f} s")
    for task_run in sorted((t for t in tasks if t.start_time and t.end_time), key=lambda t: t.start_time):
        print(f"    task {task_run.name:27s} {(task_run.end_time - task_run.start_time).total_seconds():6.1f} s")


if __name__ == "__main__":
    main()
