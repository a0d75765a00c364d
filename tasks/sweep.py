"""Sweep jobs: a typed spec for hyperparameter tuning, and reading a finished sweep's trials.

Submit and wait with ``tasks.jobs.submit_job`` / ``wait_for_job``: a sweep job is a job like any other.
The search space is plain data in Azure's YAML form, so a flow parameter (and the Prefect UI's form)
can hold it: ``{"reg_rate": {"type": "choice", "values": [0.01, 0.1, 1]}}``.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import task
from pydantic import BaseModel, Field, field_validator, model_validator

from amlkit.sweep.policies import EarlyTermination
from amlkit.sweep.space import SearchSpace, parameter_names, referenced_parameters
from tasks.jobs import CommandJobSpec, InputSpec, JobSpec
from tasks.retries import TRANSIENT_RETRIES
from tasks.workspace import get_client, tracking_client

Sampling = Literal["grid", "random", "sobol", "bayesian"]


class EarlyTerminationSpec(BaseModel):
    """An Azure early termination policy as plain data; each logging of the primary metric is an interval."""

    type: Literal["bandit", "median_stopping", "truncation_selection"] = Field(description="Azure's policy")
    slack_factor: float | None = Field(None, gt=0, description="bandit: allowed ratio from the best trial")
    slack_amount: float | None = Field(None, gt=0, description="bandit: allowed distance from the best trial")
    truncation_percentage: int | None = Field(None, ge=1, le=99, description="truncation_selection: percent cut each time")
    evaluation_interval: int = Field(1, ge=1, description="The policy is applied every this many intervals")
    delay_evaluation: int = Field(0, ge=0, description="Intervals every trial runs before the policy first applies")

    def to_policy(self) -> Any:
        from azure.ai.ml.sweep import (
            BanditPolicy,
            MedianStoppingPolicy,
            TruncationSelectionPolicy,
        )

        timing = {"evaluation_interval": self.evaluation_interval, "delay_evaluation": self.delay_evaluation}
        if self.type == "bandit":
            return BanditPolicy(slack_factor=self.slack_factor, slack_amount=self.slack_amount, **timing)
        if self.type == "median_stopping":
            return MedianStoppingPolicy(**timing)
        return TruncationSelectionPolicy(truncation_percentage=self.truncation_percentage, **timing)


class SweepJobSpec(JobSpec):
    """A sweep job: a trial command job, the search space over some of its inputs, and how to search.

    Example:
        ```python
        spec = SweepJobSpec(
            trial=CommandJobSpec(command="python train.py --reg_rate ${{inputs.reg_rate}}", code="src",
                                 inputs={"reg_rate": 0.01}),
            search_space={"reg_rate": {"type": "choice", "values": [0.01, 0.1, 1]}},
            sampling_algorithm="grid", primary_metric="training_accuracy_score", goal="maximize",
        )
        ```
    """

    trial: CommandJobSpec
    search_space: dict[str, dict[str, Any]] = Field(description="Azure's YAML form: {name: {type: choice, values: [...]}}")
    sampling_algorithm: Sampling = "random"
    seed: int | None = Field(None, ge=0, description="random / sobol: the same seed repeats the configurations")
    primary_metric: str = Field(min_length=1, description="The metric each trial logs with MLflow")
    goal: Literal["maximize", "minimize"] = "maximize"
    early_termination: EarlyTerminationSpec | None = None
    max_total_trials: int = Field(20, ge=1, le=1000)
    max_concurrent_trials: int | None = Field(None, ge=1)
    timeout_minutes: float | None = Field(None, gt=0, description="The whole sweep (Azure counts whole minutes)")
    trial_timeout_minutes: float | None = Field(None, gt=0, description="One trial (Azure counts whole minutes)")
    display_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("goal", mode="before")
    @classmethod
    def _lower_goal(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> "SweepJobSpec":
        check_search_space(self.search_space, self.sampling_algorithm)
        if self.seed is not None and self.sampling_algorithm not in ("random", "sobol"):
            raise ValueError(f"Azure's {self.sampling_algorithm} sampling takes no seed; leave seed empty or use random / sobol.")
        if self.early_termination is not None:
            EarlyTermination(self.early_termination.model_dump(exclude_none=True), maximize=self.goal == "maximize")
        unused = sorted(parameter_names(self.search_space) - referenced_parameters(self.trial.command))
        if unused:
            raise ValueError(
                f"The search space sets {', '.join(unused)}, but the trial command never uses it: "
                f"add --{unused[0]} ${{{{inputs.{unused[0]}}}}} (and so on) to the command."
            )
        return self

    def data_inputs(self) -> dict[str, InputSpec]:
        return self.trial.data_inputs()

    def with_data_inputs(self, inputs: dict[str, InputSpec]) -> "SweepJobSpec":
        return self.model_copy(update={"trial": self.trial.with_data_inputs(inputs)})

    def with_paths_replaced(self, replacements: dict[str, str]) -> "SweepJobSpec":
        return self.model_copy(update={"trial": self.trial.with_paths_replaced(replacements)})

    def local_paths(self) -> list[str]:
        return self.trial.local_paths()

    def to_job(self, name: str | None = None) -> Any:
        """The ``azure.ai.ml`` sweep job entity this spec describes."""
        defaults = {key: 0 for key in parameter_names(self.search_space) if key not in self.trial.inputs}
        trial = self.trial.model_copy(update={"inputs": {**defaults, **self.trial.inputs}, "experiment_name": self.experiment_name})
        expressions = {name: search_expression(value) for name, value in self.search_space.items()}
        job = trial.to_command()(**expressions).sweep(
            sampling_algorithm=self._sampling(),
            primary_metric=self.primary_metric,
            goal=self.goal.capitalize(),
            early_termination_policy=self.early_termination.to_policy() if self.early_termination else None,
            max_total_trials=self.max_total_trials,
            max_concurrent_trials=self.max_concurrent_trials,
            timeout=_seconds(self.timeout_minutes),
            trial_timeout=_seconds(self.trial_timeout_minutes),
        )._to_job()
        job.name, job.experiment_name = name, self.experiment_name
        job.display_name, job.tags = self.display_name, dict(self.tags)
        return job


    def _sampling(self) -> Any:
        from azure.ai.ml.sweep import RandomSamplingAlgorithm

        if self.sampling_algorithm == "sobol":  # Azure's sobol is a rule of random sampling
            return RandomSamplingAlgorithm(rule="sobol", seed=self.seed)
        if self.sampling_algorithm == "random" and self.seed is not None:
            return RandomSamplingAlgorithm(seed=self.seed)
        return self.sampling_algorithm


def check_search_space(search_space: dict[str, Any], sampling_algorithm: str) -> None:
    """Raise ValueError, saying what to fix, when the space is empty, malformed or unsuited to the sampling.

    Needs no workspace, so a parameter model can refuse a bad space before its flow starts.

    Example:
        ```python
        check_search_space({"learning_rate": {"type": "choice", "values": []}}, "random")   # ValueError
        ```
    """
    SearchSpace(search_space, sampling_algorithm)


def search_expression(spec: Any) -> Any:
    """An ``azure.ai.ml.sweep`` expression from its YAML form; a choice's dict values may hold expressions."""
    from azure.ai.ml import sweep

    classes = {
        "choice": sweep.Choice, "randint": sweep.Randint, "uniform": sweep.Uniform, "quniform": sweep.QUniform,
        "loguniform": sweep.LogUniform, "qloguniform": sweep.QLogUniform, "normal": sweep.Normal,
        "qnormal": sweep.QNormal, "lognormal": sweep.LogNormal, "qlognormal": sweep.QLogNormal,
    }
    if not (isinstance(spec, dict) and isinstance(spec.get("type"), str) and spec["type"].lower() in classes):
        return spec
    arguments = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"].lower() == "choice":
        arguments["values"] = [
            {k: search_expression(v) for k, v in value.items()} if isinstance(value, dict) else value
            for value in arguments.get("values") or []
        ]
    return classes[spec["type"].lower()](**arguments)


def _seconds(minutes: float | None) -> int | None:
    return None if minutes is None else int(minutes * 60)


class SweepTrial(BaseModel):
    name: str
    status: str
    parameters: dict[str, str]
    score: float | None = Field(description="The last value of the primary metric")
    intervals: int = Field(description="How many times the trial logged the primary metric")
    duration_seconds: float | None = None


class SweepResult(BaseModel):
    job_name: str
    primary_metric: str
    goal: str
    best_trial: str | None
    best_score: float | None
    best_parameters: dict[str, str]
    trials: list[SweepTrial]

    @property
    def compute_seconds(self) -> float:
        return sum(t.duration_seconds or 0.0 for t in self.trials)


@task(name="sweep_trials", **TRANSIENT_RETRIES)
def sweep_trials(workspace: str, job_name: str) -> SweepResult:
    """A finished sweep's trials (child jobs with their MLflow runs) and its best trial.

    Example:
        ```python
        result = sweep_trials("local", job.name)
        result.best_trial, result.best_parameters        # "tune-...-abc_2", {"reg_rate": "0.1"}
        ```
    """
    client = get_client(workspace)
    tracking = tracking_client(workspace)
    job = client.jobs.get(job_name)
    metric, goal = job.objective.primary_metric, str(job.objective.goal).lower()
    tuned = parameter_names(job._to_dict().get("search_space") or {})
    trials = []
    for child in client.jobs.list(parent_job_name=job_name):
        run = tracking.get_run(child.name)
        history = sorted(tracking.get_metric_history(child.name, metric), key=lambda m: (m.step, m.timestamp))
        trials.append(
            SweepTrial(
                name=child.name,
                status=child.status,
                parameters={k: v for k, v in run.data.params.items() if k in tuned},
                score=history[-1].value if history and child.status == "Completed" else None,
                intervals=len(history),
                duration_seconds=(run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None,
            )
        )
    best = (job.properties or {}).get("best_child_run_id")
    best_trial = next((t for t in trials if t.name == best), None)
    return SweepResult(
        job_name=job_name,
        primary_metric=metric,
        goal=goal,
        best_trial=best,
        best_score=best_trial.score if best_trial else None,
        best_parameters=best_trial.parameters if best_trial else {},
        trials=trials,
    )
