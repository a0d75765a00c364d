"""``amlflows``: run the lifecycle flows from a terminal.

    amlflows run baseline                               # AutoML on the bundled diabetes sample, on localml
    amlflows run train                                  # your own training script as a command job
    amlflows run train --hyperparameters max_iter=200 learning_rate=0.05
    amlflows run train --workspace azure --compute cpu-cluster
    amlflows run refine --hyperparameters learning_rate=0.05   # AutoML's best model, retrained with a change
    amlflows run rai_review                             # the baseline model's Responsible AI review and verdict
    amlflows run rai_review --thresholds '{"primary_metric": "AUC_weighted", "primary_metric_threshold": 0.9}'
    amlflows run monitor --data azureml:diabetes:2      # drift of a new data version; an event when it drifted
    amlflows run retrain --data azureml:diabetes:2 --tune   # a candidate (AutoML, and a sweep), reviewed, maybe promoted
    amlflows run batch_score                            # the champion scores examples/data/patient-data on a batch endpoint
    amlflows run batch_score --data azureml:patient-data:2 --mini-batch-size 10
    amlflows run tune                                   # a sweep over the training script's hyperparameters
    amlflows run tune --sampling-algorithm grid --early-termination none \
        --search-space 'learning_rate={"type": "choice", "values": [0.05, 0.1, 0.2]}'

    amlflows up                                         # Prefect server, work pool, deployments, worker, MLflow UI
    amlflows up --database postgresql --workers 2       # the server on a PostgreSQL of its own, two workers
    amlflows status
    amlflows down

Each flow's options are generated from its parameter model, so ``amlflows run
train --help`` lists exactly what the Prefect UI's form shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from typing import Any, Callable, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

# offline by default: Prefect's server would otherwise try to send usage telemetry
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# the temporary server of a first run builds its database first: on a busy 2-core machine that outlasts Prefect's 20 s
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from amlflows.stack import DATABASES, MAX_WORKERS
from flows.baseline import BaselineParameters, baseline
from flows.batch_score import BatchScoreParameters, batch_score
from flows.deploy import DeployParameters, deploy
from flows.monitor import MonitorParameters, monitor
from flows.rai_review import RAIReviewParameters, rai_review
from flows.refine import RefineParameters, refine
from flows.retrain import RetrainParameters, retrain
from flows.train import TrainParameters, train
from flows.tune import TuneParameters, tune

FLOWS: dict[str, tuple[Callable[..., BaseModel], type[BaseModel]]] = {
    "baseline": (baseline, BaselineParameters),
    "train": (train, TrainParameters),
    "refine": (refine, RefineParameters),
    "tune": (tune, TuneParameters),
    "rai_review": (rai_review, RAIReviewParameters),
    "monitor": (monitor, MonitorParameters),
    "retrain": (retrain, RetrainParameters),
    "deploy": (deploy, DeployParameters),
    "batch_score": (batch_score, BatchScoreParameters),
}
#: ``--<option> none`` of an optional nested setting (an option left out keeps its default)
_NONE = object()


def _parse_value(text: str) -> Any:
    """``200`` -> 200, ``0.05`` -> 0.05, ``true`` -> True, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _setting_parser(field: FieldInfo, setting: type) -> Callable[[str], Any]:
    """The parser of a nested setting's option: a JSON object, or ``none`` to turn it off. Its messages show this
    setting's own form (its default, else its keys), so a malformed value is answered with what to write."""
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        form = f"a JSON object such as '{json.dumps(default.model_dump(mode='json', exclude_none=True))}'"
    else:
        keys = setting.model_fields if issubclass(setting, BaseModel) else [f.name for f in dataclasses.fields(setting)]
        form = f"a JSON object with keys among {', '.join(keys)}"

    def parse(text: str) -> Any:
        if text.strip().lower() in ("none", "null"):
            return _NONE
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not valid JSON ({error.msg} at character {error.pos}); write {form}, or 'none'"
            ) from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected {form}, or 'none'; got {text!r}")
        return value

    return parse


def _parse_mapping(items: list[str]) -> dict[str, Any]:
    mapping = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{item}'")
        if value.lstrip().startswith(("{", "[")):  # meant as JSON: say so when it is not valid JSON
            try:
                mapping[key] = json.loads(value)
            except json.JSONDecodeError as error:
                raise argparse.ArgumentTypeError(f"the value of {key} is not valid JSON ({error.msg} at character {error.pos}): {value!r}") from None
        else:
            mapping[key] = _parse_value(value)
    return mapping


def _add_field_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        help_text = _help(field)
        annotation = field.annotation
        args = typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next((a for a in args if a is not type(None)), str)
        if annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(annotation) is list:
            parser.add_argument(flag, dest=name, nargs="+", metavar="VALUE", default=None, help=help_text)
        elif typing.get_origin(annotation) is dict:
            parser.add_argument(flag, dest=name, nargs="+", metavar="KEY=VALUE", default=None, help=help_text)
        elif isinstance(annotation, type) and (issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)):
            parser.add_argument(flag, dest=name, type=_setting_parser(field, annotation), metavar="JSON", default=None, help=help_text)
        elif typing.get_origin(annotation) is Literal:
            parser.add_argument(flag, dest=name, choices=typing.get_args(annotation), default=None, help=help_text)
        else:
            kind = annotation if annotation in (int, float) else str
            parser.add_argument(flag, dest=name, type=kind, default=None, help=help_text)


def _help(field: FieldInfo) -> str:
    """The field's description and its default, as the Prefect UI's form shows them (argparse needs % doubled)."""
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = json.dumps(default.model_dump(mode="json"))
    elif isinstance(default, (dict, list)):
        default = json.dumps(default) if isinstance(default, dict) else " ".join(map(str, default)) or "[]"
    text = f"{field.description or ''} (default: {default})".strip()
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amlflows", description="Prefect flows for the Azure ML model lifecycle, on Azure or on localml."
    )
    commands = parser.add_subparsers(dest="_command", required=True)
    up = commands.add_parser("up", help="start the local stack: Prefect server, work pool, every deployment, workers, the MLflow UI")
    up.add_argument("--database", choices=DATABASES, help="the Prefect server's database: sqlite (the default), or postgresql, "
                    "a PostgreSQL of the stack's own in .amlflows/postgres (for many runs at once); remembered for the next up")
    up.add_argument("--workers", type=_worker_count, metavar="N", help=f"process workers on the pool (default 1, at most {MAX_WORKERS}); remembered")
    commands.add_parser("status", help="what `amlflows up` started that is running")
    commands.add_parser("down", help="stop what `amlflows up` started")
    run = commands.add_parser("run", help="run a flow now, in this process")
    flows = run.add_subparsers(dest="_flow", required=True, metavar="FLOW")
    for name, (flow_function, model) in FLOWS.items():
        flow_parser = flows.add_parser(name, help=(flow_function.description or "").strip().splitlines()[0])
        _add_field_options(flow_parser, model)
    return parser


class ParameterError(ValueError):
    """Options that do not make valid parameters for the flow; the message says what to fix."""


def flow_parameters(name: str, options: dict[str, Any]) -> BaseModel:
    """The parameters a flow runs with: its model's defaults, with the options given on the command line."""
    _, model = FLOWS[name]
    values = {k: v for k, v in options.items() if v is not None}
    mappings = {k for k, f in model.model_fields.items() if typing.get_origin(f.annotation) is dict}
    for key in mappings & set(values):
        try:
            values[key] = _parse_mapping(values[key])
        except argparse.ArgumentTypeError as error:
            raise ParameterError(f"--{key.replace('_', '-')}: {error}") from None
    values = {k: None if v is _NONE else v for k, v in values.items()}
    try:
        return model(**values)
    except ValidationError as error:
        problems = "\n".join(f"  - {'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors())
        raise ParameterError(f"invalid parameters for '{name}':\n{problems}") from None


def run_flow(name: str, options: dict[str, Any]) -> int:
    try:
        params = flow_parameters(name, options)
    except ParameterError as error:
        print(f"amlflows: {error}", file=sys.stderr)
        return 2
    flow_function, _ = FLOWS[name]
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:  # Prefect will start a temporary server for this run
        from amlflows.guard import start_guard

        start_guard()
    try:
        result = flow_function(params)
    except Exception as error:
        print(f"\namlflows: flow '{name}' failed: {error}", file=sys.stderr)
        return 1
    print(f"\n{name} finished:")
    for key, value in result.model_dump().items():
        print(f"  {key}: {value}")
    return 0


def _worker_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_WORKERS}, not {text!r}")
    return int(text)


def _print_status(services: dict[str, int | None]) -> int:
    """Each service and its pid; 0 when all run, 3 otherwise (as ``systemctl status`` does)."""
    for name, pid in services.items():
        print(f"{name:15} {f'running (pid {pid})' if pid else 'not running'}")
    return 0 if all(services.values()) else 3


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    command = args.pop("_command")
    if command == "up":
        from amlflows.stack import Stack, up

        return up(Stack().remembered(database=args["database"], workers=args["workers"]))
    if command == "status":
        from amlflows.stack import Stack, status

        return _print_status(status(Stack().remembered()))
    if command == "down":
        from amlflows.stack import down

        return down()
    return run_flow(args.pop("_flow"), args)


if __name__ == "__main__":
    sys.exit(main())
