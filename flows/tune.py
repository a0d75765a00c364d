"""The ``tune`` flow: a training script's hyperparameters are tuned by a sweep job, and the best trial's model is registered.

    register data -> ensure compute -> submit sweep job -> wait -> trials -> register best model -> report
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from prefect import flow
from pydantic import BaseModel, Field, model_validator

from flows.train import Hyperparameter, TrainParameters, start_job
from tasks.jobs import wait_for_job
from tasks.models import ModelSpec, register_model
from tasks.reports import publish_sweep_report
from tasks.sweep import EarlyTerminationSpec, SweepJobSpec, check_search_space, sweep_trials

#: Minutes the wait allows beyond the sweep's own timeout (start-up, the last trial finishing).
WAIT_GRACE_MINUTES = 5


class TuneParameters(TrainParameters):
    """Parameters of the ``tune`` flow; the defaults tune the diabetes classifier on the bundled sample.

    ``hyperparameters`` are the fixed ones; ``search_space`` names the tuned ones in Azure's YAML form.
    """

    hyperparameters: dict[str, Hyperparameter] = Field(
        {"max_iter": 100}, description="Fixed hyperparameters, passed to every trial as --name value"
    )
    search_space: dict[str, dict[str, Any]] = Field(
        {
            "learning_rate": {"type": "choice", "values": [0.03, 0.1, 0.3]},
            "max_leaf_nodes": {"type": "choice", "values": [7, 15, 31]},
        },
        description='Tuned hyperparameters, e.g. {"reg_rate": {"type": "choice", "values": [0.01, 0.1, 1]}}',
    )
    sampling_algorithm: Literal["grid", "random", "sobol", "bayesian"] = Field("bayesian", description="How configurations are chosen")
    seed: int | None = Field(None, ge=0, description="random / sobol: the same seed repeats the configurations")
    primary_metric: str = Field("AUC", description="The metric the script logs with MLflow that decides the best trial")
    goal: Literal["maximize", "minimize"] = Field("maximize", description="Whether a higher or lower primary metric is better")
    early_termination: EarlyTerminationSpec | None = Field(
        EarlyTerminationSpec(type="bandit", slack_factor=0.02, delay_evaluation=1),
        description="Stops trials that fall behind (each logging of the primary metric is an interval); none to let all finish",
    )
    max_total_trials: int = Field(6, ge=1, le=1000, description="Trials in all (a grid stops when every point ran)")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials at once (also bounded by the compute's nodes)")
    trial_timeout_minutes: float | None = Field(None, gt=0, description="A trial running longer is stopped")
    timeout_minutes: float = Field(30, gt=0, description="The whole sweep; running trials are stopped when it passes")
    experiment_name: str = Field("diabetes-tuning", description="MLflow / Azure ML experiment")
    model_name: str = Field("diabetes-tuned", description="Name the best trial's model is registered as")

    @model_validator(mode="before")
    @classmethod
    def _check_overlap(cls, values: Any) -> Any:
        if isinstance(values, dict):
            both = sorted(set(values.get("search_space") or {}) & set(values.get("hyperparameters") or {}))
            if both:
                raise ValueError(f"{', '.join(both)} is both fixed (hyperparameters) and tuned (search_space): keep it in one of them.")
        return values

    @model_validator(mode="before")
    @classmethod
    def _check_search_space(cls, values: Any) -> Any:
        # before the script's options are checked against an example value of each range: a range with no
        # values has none, and the message must be about the range
        field = cls.model_fields["sampling_algorithm"]
        sampling = values.get("sampling_algorithm", field.default) if isinstance(values, dict) else None
        if sampling in get_args(field.annotation) and isinstance(values.get("search_space"), dict):  # else the fields' own checks speak
            check_search_space(values["search_space"], sampling)
        return values

    def script_inputs(self) -> dict[str, Hyperparameter]:
        return {**{name: _example_value(spec) for name, spec in self.search_space.items()}, **self.hyperparameters}

    def job_spec(self, data_reference: str) -> SweepJobSpec:
        return SweepJobSpec(
            trial=super().job_spec(data_reference),
            search_space=self.search_space,
            sampling_algorithm=self.sampling_algorithm,
            seed=self.seed,
            primary_metric=self.primary_metric,
            goal=self.goal,
            early_termination=self.early_termination,
            max_total_trials=self.max_total_trials,
            max_concurrent_trials=self.max_concurrent_trials,
            timeout_minutes=self.timeout_minutes,
            trial_timeout_minutes=self.trial_timeout_minutes,
            experiment_name=self.experiment_name,
            display_name=f"tune-{self.script.rsplit('/', 1)[-1].removesuffix('.py')}",
        )


def _example_value(spec: Any) -> Any:
    """A value the expression can take, to check the script accepts that hyperparameter and its type."""
    if not isinstance(spec, dict):
        return spec
    if spec.get("type") == "choice" and spec.get("values") and not isinstance(spec["values"][0], dict):
        return spec["values"][0]
    for key in ("min_value", "mu", "upper"):
        if isinstance(spec.get(key), (int, float)):
            return max(spec[key], 0) if key == "upper" else spec[key]
    return "value"


class TuneResult(BaseModel):
    job_name: str
    status: str
    best_trial: str | None
    best_score: float | None
    best_parameters: dict[str, str]
    trials: int
    trials_stopped_early: int
    model: str = Field(description="Registered model reference, azureml:NAME:VERSION")
    data: str = Field(description="Data asset reference the trials trained on")
    studio_url: str | None = None
    reused: bool = Field(description="True when an identical earlier sweep was re-attached (nothing trained)")


@flow(name="tune")
def tune(params: TuneParameters = TuneParameters.defaults()) -> TuneResult:
    """Tune a training script's hyperparameters with an Azure ML sweep job, and register the best model."""
    params = params.validated()
    workspace = params.workspace
    data, job = start_job(params)
    result = wait_for_job(workspace, job.name, timeout_seconds=(params.timeout_minutes + WAIT_GRACE_MINUTES) * 60)
    sweep = sweep_trials(workspace, job.name)
    model = register_model(
        workspace,
        ModelSpec.of_job_artifacts(
            params.model_name, sweep.best_trial, params.model_output,
            tags={
                "sweep_job": job.name,
                "best_trial": str(sweep.best_trial),
                params.primary_metric: f"{sweep.best_score:.4f}",
                "data": data.reference,
                **{f"param.{k}": v for k, v in sweep.best_parameters.items()},
            },
        ),
    )
    publish_sweep_report(sweep, model.reference, result.studio_url, job.reused)
    return TuneResult(
        job_name=job.name,
        status=result.status,
        best_trial=sweep.best_trial,
        best_score=sweep.best_score,
        best_parameters=sweep.best_parameters,
        trials=len(sweep.trials),
        trials_stopped_early=sum(t.status == "Canceled" for t in sweep.trials),
        model=model.reference,
        data=data.reference,
        studio_url=result.studio_url,
        reused=job.reused,
    )
