"""The program a pipeline job runs: ``python -m localml.pipeline.driver --config pipeline.json``.

It submits each node as a child command job ``<pipeline>_<node>`` as soon as every node it reads
from has completed, so nodes with nothing between them run at once (as far as their compute allows).
A node that fails fails the pipeline: the nodes still running are canceled and no other node starts,
unless the pipeline's settings say ``continue_on_step_failure``, in which case every node whose inputs
can still be made runs. Each node's job and status go to ``outputs/pipeline_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localml.client import LocalMLClient
from localml.errors import LocalMLValidationError
from localml.pipeline.submit import node_job
from localml.store import TERMINAL_STATUSES

SUMMARY_FILE = "pipeline_summary.json"
POLL_SECONDS = 0.25


def log(message: str) -> None:
    print(f"[pipeline] {message}", flush=True)


@dataclass
class Node:
    template: dict
    job: str | None = None
    status: str = "NotStarted"
    error: str | None = None
    canceled_by_pipeline: bool = False

    @property
    def name(self) -> str:
        return self.template["node"]

    @property
    def running(self) -> bool:
        return self.job is not None and self.status not in TERMINAL_STATUSES


class Pipeline:
    def __init__(self, config: dict):
        self.client = LocalMLClient(config["root"], workspace_name=config["workspace_name"])
        self.parent = config["parent"]
        self.continue_on_step_failure = bool(config["continue_on_step_failure"])
        self.nodes = {template["node"]: Node(template) for template in config["nodes"]}  # each after those it reads from
        self.failures: list[Node] = []

    def run(self) -> None:
        log(f"{len(self.nodes)} nodes: {', '.join(self.nodes)}")
        while True:
            self._observe()
            if self.failures and not self.continue_on_step_failure:
                self._cancel_running()
            else:
                self._launch_ready()
            if not any(node.running for node in self.nodes.values()):
                break
            time.sleep(POLL_SECONDS)
        for node in self.nodes.values():
            if node.job is None and node.status == "NotStarted":
                log(f"node {node.name}: not started")

    def _launch_ready(self) -> None:
        for node in self.nodes.values():
            if node.job is None and node.status == "NotStarted" and all(
                self.nodes[upstream].status == "Completed" for upstream in node.template["depends_on"]
            ):
                self._launch(node)

    def _launch(self, node: Node) -> None:
        try:
            node.job = self.client.jobs.submit_child(node_job(node.template), self.parent).name
        except LocalMLValidationError as error:  # an input an upstream node should have written is missing, say
            node.status, node.error = "Failed", error.message
            self.failures.append(node)
            log(f"node {node.name}: could not start: {error.message}")
            return
        log(f"node {node.name}: started job {node.job}")

    def _observe(self) -> None:
        for node in self.nodes.values():
            if not node.running:
                continue
            job = self.client.jobs.get(node.job)
            node.status = job.status
            if node.status in TERMINAL_STATUSES:
                node.error = job.properties.get("localml.error") or None
                if node.status != "Completed" and not node.canceled_by_pipeline:
                    self.failures.append(node)
                log(f"node {node.name}: {node.status} (job {node.job})" + (f": {node.error}" if node.error else ""))

    def _cancel_running(self) -> None:
        for node in self.nodes.values():
            if node.running and not node.canceled_by_pipeline:
                node.canceled_by_pipeline = True
                log(f"node {node.name}: canceling job {node.job}, since node {self.failures[0].name} failed")
                self.client.jobs.begin_cancel(node.job)

    def summary(self) -> dict:
        return {
            "nodes": {
                node.name: {"job": node.job, "status": node.status, "error": node.error, "depends_on": node.template["depends_on"]}
                for node in self.nodes.values()
            },
            "failed_node": self.failures[0].name if self.failures else None,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localml.pipeline.driver")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    pipeline = Pipeline(json.loads(Path(args.config).read_text()))
    pipeline.run()
    Path("outputs").mkdir(exist_ok=True)
    Path("outputs", SUMMARY_FILE).write_text(json.dumps(pipeline.summary(), indent=2))
    if pipeline.failures:
        failed = pipeline.failures[0]
        reason = " ".join((failed.error or f"it ended {failed.status}").split())
        raise RuntimeError(f"Pipeline node '{failed.name}' failed" + (f" (job {failed.job})" if failed.job else "") + f": {reason}")
    log("all nodes completed")


if __name__ == "__main__":
    main(sys.argv[1:])
