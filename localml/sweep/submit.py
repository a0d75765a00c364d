"""A sweep job, checked at submission and turned into its trial template and the command that runs it.

Every check happens here, before any trial starts: the search space and the sampling that must
suit it, the objective, the early termination policy, and that the trial command uses every
hyperparameter the search space names.
"""

from __future__ import annotations

import math
import re

from azure.ai.ml import Output, command

from amlkit.sweep.space import parameter_names, referenced_parameters
from localml.errors import LocalMLValidationError

SUMMARY_PROPERTIES = ("best_child_run_id", "best_score", "primary_metric")
_SEARCH_SPACE_PLACEHOLDER = re.compile(r"\$\{\{\s*search_space\.([A-Za-z0-9_]+)\s*\}\}")
DEFAULT_MAX_TRIALS = 20


def sweep_settings(job) -> dict:
    """The sweep's settings as plain data, checked (raises LocalMLValidationError)."""
    from amlkit.sweep.policies import EarlyTermination
    from amlkit.sweep.space import SearchSpace, parse_sampling

    data = job._to_dict()
    objective = data.get("objective") or {}
    metric, goal = objective.get("primary_metric"), str(objective.get("goal") or "").lower()
    if not metric:
        raise LocalMLValidationError("The sweep has no primary_metric: name the metric each trial logs with MLflow.")
    if goal not in ("maximize", "minimize"):
        raise LocalMLValidationError(f"The sweep's goal must be 'Maximize' or 'Minimize', got '{objective.get('goal')}'.")
    sampling, seed = parse_sampling(data.get("sampling_algorithm") or "random")
    space = data.get("search_space")
    search_space = SearchSpace(space, sampling)
    EarlyTermination(data.get("early_termination"), maximize=goal == "maximize")
    unused = sorted(parameter_names(space) - referenced_parameters(job.trial.command))
    if unused:
        raise LocalMLValidationError(
            f"The search space sets {', '.join(unused)}, but the trial command never uses "
            f"{'it' if len(unused) == 1 else 'them'}: reference each as ${{{{inputs.<name>}}}} (or ${{{{search_space.<name>}}}})."
        )
    limits = data.get("limits") or {}
    if limits and not limits.get("max_total_trials"):
        # Azure's sweep schema requires it once limits are set; a stored sweep without it would not load
        raise LocalMLValidationError(
            "The sweep's limits have no max_total_trials. Give it with the other limits, e.g. "
            "sweep_job.set_limits(max_total_trials=20, max_concurrent_trials=2)."
        )
    max_trials = limits.get("max_total_trials") or DEFAULT_MAX_TRIALS
    if sampling == "grid":  # a grid is done once every point ran
        max_trials = min(limits.get("max_total_trials") or math.inf, search_space.grid_size())
    return {
        "search_space": space,
        "sampling": sampling,
        "seed": seed,
        "primary_metric": metric,
        "maximize": goal == "maximize",
        "early_termination": data.get("early_termination"),
        "max_total_trials": int(max_trials),
        "max_concurrent_trials": limits.get("max_concurrent_trials"),
        "timeout": limits.get("timeout"),
        "trial_timeout": limits.get("trial_timeout"),
    }


def trial_template(job):
    """The command job every trial runs: the sweep's trial with its hyperparameters as inputs.

    Hyperparameters get a placeholder value here; each trial gets its sampled ones.
    """
    trial = job.trial
    space = job._to_dict().get("search_space") or {}
    fixed = {k: v for k, v in (job.inputs or {}).items() if k not in space}
    placeholders = {name: 0 for name in parameter_names(space)}
    return command(
        command=_SEARCH_SPACE_PLACEHOLDER.sub(lambda m: f"${{{{inputs.{m.group(1)}}}}}", trial.command or ""),
        code=trial.code,
        environment=trial.environment,
        environment_variables=dict(trial.environment_variables or {}) or None,
        inputs={**{k: getattr(v, "_data", v) for k, v in fixed.items()}, **placeholders},
        outputs={k: Output(type=getattr(v, "type", "uri_folder")) for k, v in (trial.outputs or {}).items()},
        compute=job.compute,
        experiment_name=job.experiment_name,
        name=f"{job.name}_template",
    )._to_job()


def stored_spec(job, template_spec: dict, settings: dict) -> dict:
    """The sweep as stored: its trial reduced to what Azure's YAML schema holds, with the uploaded code,
    and the trial budget it runs with (Azure's schema requires one)."""
    data = job._to_dict()
    data["limits"] = {**(data.get("limits") or {}), "max_total_trials": settings["max_total_trials"]}
    data["trial"] = {
        "command": job.trial.command,
        "code": template_spec.get("code"),
        "environment": template_spec.get("environment"),
    }
    pinned = template_spec.get("inputs") or {}
    data["inputs"] = {k: pinned.get(k, v) for k, v in (data.get("inputs") or {}).items()}
    return data
