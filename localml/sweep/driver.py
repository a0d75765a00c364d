"""The program a sweep job runs: ``python -m localml.sweep.driver --config sweep.json``.

It asks Optuna for configurations, runs each as a child command job ``<sweep>_<n>`` (so a
trial queues for the compute, logs to its own MLflow run and can be canceled like any job),
reads each trial's primary metric from MLflow as it is logged, stops trials the early
termination policy rejects, and reports the best trial in ``outputs/sweep_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from amlkit.sweep.policies import EarlyTermination, TrialProgress
from amlkit.sweep.space import SearchSpace, make_sampler
from localml.client import LocalMLClient
from localml.store import TERMINAL_STATUSES

SUMMARY_FILE = "sweep_summary.json"
POLL_SECONDS = 0.5


def log(message: str) -> None:
    print(f"[sweep] {message}", flush=True)


@dataclass
class Trial:
    name: str
    study_trial: optuna.trial.Trial
    parameters: dict
    values: list[float] = field(default_factory=list)
    status: str = "NotStarted"
    stopped_early: bool = False

    @property
    def running(self) -> bool:
        return self.status not in TERMINAL_STATUSES


class Sweep:
    def __init__(self, config: dict):
        self.config = config
        self.client = LocalMLClient(config["root"])
        self.parent = config["parent"]
        self.metric = config["primary_metric"]
        self.maximize = config["maximize"]
        self.space = SearchSpace(config["search_space"], config["sampling"])
        sampler = make_sampler(config["sampling"], config["seed"], self.space, max_total_trials=config["max_total_trials"])
        self.study = optuna.create_study(direction="maximize" if self.maximize else "minimize", sampler=sampler)
        self.policy = EarlyTermination(config["early_termination"], maximize=self.maximize)
        self.max_trials = config["max_total_trials"]
        self.max_concurrent = config["max_concurrent_trials"] or self.max_trials
        self.deadline = time.time() + config["timeout"] if config["timeout"] else None
        self.trials: list[Trial] = []
        self.timed_out = False
        self.tracking = self.client._workspace.tracking  # plain SQL on the store: loading MLflow costs seconds
        self.experiment_name = self.client.jobs.get(self.parent).experiment_name

    def run(self) -> None:
        log(f"{self.config['sampling']} sampling, up to {self.max_trials} trials, {self.max_concurrent} at a time, "
            f"{'maximizing' if self.maximize else 'minimizing'} {self.metric}")
        while True:
            self.timed_out = self.deadline is not None and time.time() > self.deadline
            if self.timed_out:
                self._cancel_running("the sweep's timeout passed")
            while not self.timed_out and len(self.trials) < self.max_trials and self._running_count() < self.max_concurrent:
                self._launch()
            self._observe()
            if not any(t.running for t in self.trials) and (self.timed_out or len(self.trials) >= self.max_trials):
                break
            time.sleep(POLL_SECONDS)

    def _running_count(self) -> int:
        return sum(1 for t in self.trials if t.running)

    def _launch(self) -> None:
        from azure.ai.ml import Input, Output, command
        from azure.ai.ml.entities import CommandJobLimits

        study_trial = self.study.ask()
        parameters = self.space.suggest(study_trial)
        name = f"{self.parent}_{len(self.trials)}"
        template = self.config["template"]  # each trial writes its own outputs, so they get no path here
        data_inputs = {
            k: Input(type=v["type"], path=v["path"]) for k, v in (template["inputs"] or {}).items()
            if isinstance(v, dict) and "path" in v and k not in parameters
        }
        literals = {k: v for k, v in (template["inputs"] or {}).items() if not isinstance(v, dict) and k not in self.config["parameters"]}
        job = command(
            name=name,
            command=template["command"],
            code=template["code"],
            environment=template["environment"],
            environment_variables=template.get("environment_variables") or None,
            inputs={**data_inputs, **literals, **parameters},
            outputs={k: Output(type=v.get("type", "uri_folder")) for k, v in (template.get("outputs") or {}).items()},
            compute=(template.get("compute") or "").removeprefix("azureml:") or None,
            experiment_name=self.experiment_name,
            display_name=name,
        )._to_job()
        if self.config["trial_timeout"]:
            job.limits = CommandJobLimits(timeout=int(self.config["trial_timeout"]))
        self.client.jobs.submit_child(job, self.parent)
        self.trials.append(Trial(name, study_trial, parameters))
        log(f"trial {name}: {parameters}")

    def _observe(self) -> None:
        for trial in self.trials:
            if not trial.running:
                continue
            trial.status = self.client.jobs.get(trial.name).status
            trial.values = self.tracking.metric_values(trial.name, self.metric)
            if not trial.running:
                self._finish(trial)
        progress = [TrialProgress(t.name, t.values, t.running) for t in self.trials]
        for name in self.policy.to_stop(progress):
            trial = next(t for t in self.trials if t.name == name)
            trial.stopped_early = True
            log(f"early termination stops {name} after {len(trial.values)} intervals (last {self.metric} = {trial.values[-1]:.4f})")
            self.client.jobs.begin_cancel(name)

    def _finish(self, trial: Trial) -> None:
        from optuna.trial import TrialState

        self._log_parameters(trial)
        if trial.status == "Completed" and not trial.values:
            error = f"The trial never logged the primary metric '{self.metric}' with MLflow, so it cannot be compared."
            self.client._workspace.catalog.update_job(trial.name, status="Failed", error=error)
            self.tracking.end_run(trial.name, "Failed")
            trial.status = "Failed"
            self.study.tell(trial.study_trial, state=TrialState.FAIL)
            log(f"trial {trial.name} failed: {error}")
        elif trial.status == "Completed":
            self.study.tell(trial.study_trial, trial.values[-1])
            log(f"trial {trial.name} completed: {self.metric} = {trial.values[-1]:.4f}")
        elif trial.status == "Canceled" and trial.stopped_early and trial.values:
            # the policy judged the region poor: the sampler learns that from the last value, though the
            # trial can never be the best (only completed trials are)
            self.study.tell(trial.study_trial, trial.values[-1])
            log(f"trial {trial.name} canceled by early termination")
        elif trial.status == "Canceled":
            self.study.tell(trial.study_trial, state=TrialState.PRUNED)
            log(f"trial {trial.name} canceled")
        else:
            self.study.tell(trial.study_trial, state=TrialState.FAIL)
            log(f"trial {trial.name} failed; see its log")

    def _log_parameters(self, trial: Trial) -> None:
        # once the trial has ended: MLflow params are write-once, and the script may log the same ones itself
        self.tracking.log_params(trial.name, {k: str(v)[:500] for k, v in trial.parameters.items()})

    def _cancel_running(self, reason: str) -> None:
        for trial in self.trials:
            if trial.running and not trial.stopped_early:
                trial.stopped_early = True
                log(f"canceling {trial.name}: {reason}")
                self.client.jobs.begin_cancel(trial.name)

    def summary(self) -> dict:
        completed = [t for t in self.trials if t.status == "Completed"]
        rows = [
            {"name": t.name, "status": t.status, "parameters": t.parameters, "score": t.values[-1] if t.values else None,
             "intervals": len(t.values), "stopped_early": t.stopped_early}
            for t in self.trials
        ]
        best = max(completed, key=lambda t: t.values[-1] if self.maximize else -t.values[-1]) if completed else None
        return {
            "best_child_run_id": best.name if best else None,
            "best_score": best.values[-1] if best else None,
            "best_parameters": best.parameters if best else None,
            "primary_metric": self.metric,
            "trials": rows,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localml.sweep.driver")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = Sweep(json.loads(Path(args.config).read_text()))
    sweep.run()
    summary = sweep.summary()
    Path("outputs").mkdir(exist_ok=True)
    Path("outputs", SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    if summary["best_child_run_id"] is None:
        reason = f"the sweep's timeout ({sweep.config['timeout']} s) passed first" if sweep.timed_out else "see the trials' logs"
        raise RuntimeError(f"No trial completed with a '{sweep.metric}' value: {reason}.")
    sweep.tracking.set_tag(sweep.parent, "best_child_run_id", summary["best_child_run_id"])
    sweep.tracking.log_metric(sweep.parent, sweep.metric, summary["best_score"])
    log(f"best trial {summary['best_child_run_id']}: {sweep.metric} = {summary['best_score']:.4f} with {summary['best_parameters']}")


if __name__ == "__main__":
    main(sys.argv[1:])
