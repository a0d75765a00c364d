"""The program an AutoML job runs: ``python -m localml.automl.driver --config automl.json --training_data ...``.

It featurizes the data, lets FLAML search algorithms and hyperparameters under the job's
limits, records one MLflow child run per trial (``<job>_<n>``, as Azure names them), saves
the best model with its featurization as an MLflow model, explains it when asked, and
writes ``outputs/automl_summary.json`` with the guardrails and the best run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from amlkit.automl.featurization import (
    FeaturizationPlan,
    as_records,
    check_training_table,
    drop_missing_target,
    plan_featurization,
)
from amlkit.automl.settings import AutoMLSettings, algorithm_table
from amlkit.metrics import classification_metrics, loss, regression_metrics
from amlkit.mltable import load_mltable
from localml.automl.starts import search_order, starting_points
from localml.tracking import Tracking

SUMMARY_FILE = "automl_summary.json"
MODEL_FOLDER = "mlflow-model"
TEST_DATA_FOLDER = "test_data"
#: Seconds kept back from the search for saving, testing and explaining the best model.
FINISHING_RESERVE_SECONDS = 15.0
RANDOM_STATE = 0
#: Rows on which the ONNX model's predictions are compared with the MLflow model's.
ONNX_CHECK_ROWS = 2000


def log(message: str) -> None:
    print(f"[automl] {message}", flush=True)


class SearchStop:
    """Ends FLAML's search after the current trial: once a trial reaches the job's exit_score, or after the
    first trial of a job that allows only one.

    FLAML has no stop hook; shrinking its time budget to zero ends the search after the current trial (the same
    check FLAML makes when the budget runs out). One trial cannot be asked of FLAML as ``max_iter=1``: it then
    trains its first configuration without scoring it, and the job would have no trial to report.
    """

    def __init__(self, exit_score: float | None, maximize: bool, single_trial: bool):
        self.exit_score, self.maximize, self.single_trial, self.automl = exit_score, maximize, single_trial, None

    def check(self, score: float) -> None:
        if self.automl is None:
            return
        if self.single_trial or self._reached(score):
            self.automl._state.time_budget = 0

    def _reached(self, score: float) -> bool:
        if self.exit_score is None:
            return False
        return (score >= self.exit_score) if self.maximize else (score <= self.exit_score)


class Search:
    def __init__(self, settings: AutoMLSettings, train: pd.DataFrame, validation: pd.DataFrame | None, plan: FeaturizationPlan):
        self.settings = settings
        self.plan = plan
        target = settings.target_column
        scale = not settings.onnx_compatible  # see localml.automl.onnx_export
        self.featurizer = plan.featurizer(settings.blocked_transformers, scale).fit(train[plan.feature_columns])
        self.classes = None
        labels = train[target]
        if settings.task == "classification":
            self.classes = sorted(pd.concat([labels, validation[target]]).unique() if validation is not None else labels.unique())
        self.y = self.encode(labels)
        self.X = self.featurizer.transform(train[plan.feature_columns])
        self.X_val = self.y_val = None
        if validation is not None:
            self.X_val = self.featurizer.transform(validation[plan.feature_columns])
            self.y_val = self.encode(validation[target])
        self.weights = train[settings.weight_column].to_numpy(dtype=float) if settings.weight_column else None
        self.target_range = float(np.ptp(labels)) if settings.task == "regression" else 0.0
        self.stop = SearchStop(settings.exit_score, settings.maximize, settings.max_trials == 1)

    @property
    def flaml_task(self) -> str:
        """FLAML's own task name: it tells binary from multiclass only when it transforms the data itself,
        and its stacked ensembles need the precise name."""
        if self.classes is None:
            return "regression"
        return "binary" if len(self.classes) == 2 else "multiclass"

    def encode(self, labels: pd.Series) -> np.ndarray:
        if self.classes is None:
            return labels.to_numpy(dtype=float)
        index = {label: i for i, label in enumerate(self.classes)}
        return labels.map(index).to_numpy()

    def scores(self, estimator, X, y) -> dict[str, float]:
        if self.settings.task == "classification":
            return classification_metrics(y, estimator.predict_proba(X), len(self.classes))
        return regression_metrics(y, estimator.predict(X), self.target_range)

    def metric(self, X_val, y_val, estimator, labels, X_train, y_train, *args, **kwargs):
        """FLAML's custom metric: the primary metric as a loss, and every Azure metric for the trial's record."""
        values = self.scores(estimator, X_val, y_val)
        primary = values.get(self.settings.primary_metric, 0.0)
        self.stop.check(primary)
        return loss(primary, self.settings.maximize), values

    def starting_points(self) -> dict[str, dict]:
        """Each algorithm's strong first configuration, for the rows FLAML will train on."""
        rows = len(self.X)
        if self.X_val is None and not self.settings.n_cross_validations:
            # FLAML's holdout split: its training part bounds the search space (rounded down to stay inside)
            rows = int(rows * (1 - self.settings.validation_data_size))
        return starting_points(self.flaml_task, self.X, self.y, self.settings.estimators, rows)

    def run(self, time_budget: float, log_file: Path):
        from flaml import AutoML

        settings = self.settings
        automl = AutoML()
        self.stop.automl = automl
        options = dict(
            task=self.flaml_task,
            metric=self.metric,
            estimator_list=search_order(settings.estimators),
            starting_points=self.starting_points(),
            time_budget=time_budget,
            max_iter=2 if settings.max_trials == 1 else settings.max_trials,  # SearchStop ends it after one
            early_stop=settings.early_termination,
            ensemble=settings.stack_ensemble,
            log_file_name=str(log_file),
            log_type="all",
            skip_transform=True,
            seed=RANDOM_STATE,
            n_jobs=-1,
            verbose=1,
        )
        if settings.stack_ensemble:
            # FLAML picks the next algorithm by expected gain, which can leave one untried and the ensemble unbuilt;
            # taking turns gives every allowed algorithm trials to stack
            options["learner_selector"] = "roundrobin"
        if self.weights is not None:
            options["sample_weight"] = self.weights
        if settings.trial_timeout_seconds:
            options["train_time_limit"] = settings.trial_timeout_seconds
        if self.X_val is not None:
            options.update(X_val=self.X_val, y_val=self.y_val, eval_method="holdout")
        elif settings.n_cross_validations:
            options.update(eval_method="cv", n_splits=settings.n_cross_validations)
        else:
            options.update(eval_method="holdout", split_ratio=settings.validation_data_size)
        automl.fit(self.X, self.y, **options)
        return automl


def validation_method(settings: AutoMLSettings, rows: int, has_validation_data: bool) -> str:
    """Choose as Azure does when the job leaves it open: cross-validation for small data, a holdout for large."""
    if has_validation_data:
        return "Validated on the given validation data."
    if settings.n_cross_validations is None and settings.validation_data_size is None:
        if rows < 20000:
            settings.n_cross_validations = 10 if rows < 1000 else 3
        else:
            settings.validation_data_size = 0.1
    if settings.n_cross_validations:
        return f"{settings.n_cross_validations}-fold cross-validation on {rows} rows."
    return f"Holdout of {settings.validation_data_size:.0%} of {rows} rows for validation."


def read_trials(log_file: Path, started: float) -> list[dict]:
    trials = []
    for line in log_file.read_text().splitlines():
        record = json.loads(line)
        if "record_id" in record:
            record["started"] = started + record["wall_clock_time"] - record["trial_time"]
            record["ended"] = started + record["wall_clock_time"]
            trials.append(record)
    return trials


def record_child_runs(tracking: Tracking, parent: str, experiment_id: str, trials: list[dict], settings: AutoMLSettings) -> dict:
    """One MLflow run per trial, named ``<parent>_<n>`` like Azure's child runs; returns the best trial."""
    names = {v: k for k, v in algorithm_table(settings.task).items()}
    client = tracking.client
    best = min(trials, key=lambda t: t["validation_loss"])
    for number, trial in enumerate(trials):
        run_id = f"{parent}_{number}"
        trial["run_id"] = run_id
        algorithm = names.get(trial["learner"], trial["learner"])
        trial["algorithm"] = algorithm
        tracking.create_run(
            run_id, run_id, {"mlflow.parentRunId": parent, "run_algorithm": algorithm, "automl.trial": str(number)},
            experiment_id=experiment_id, start_time=trial["started"],
        )
        client.log_batch(
            run_id,
            metrics=_metric_entities(trial.get("logged_metric") or {}, trial["ended"]),
            params=_param_entities({"algorithm": algorithm, **trial["config"]}),
        )
        client.set_terminated(run_id, status="FINISHED", end_time=int(trial["ended"] * 1000))
    return best


def _metric_entities(values: dict, timestamp: float):
    from mlflow.entities import Metric

    return [Metric(k, float(v), int(timestamp * 1000), 0) for k, v in values.items() if np.isfinite(v)]


def _param_entities(values: dict):
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in values.items()]


def save_model(model, sample: pd.DataFrame, folder: Path) -> None:
    """Save as an MLflow model whose pickle carries localml's model class by value (no localml needed to load)."""
    import cloudpickle
    import mlflow.sklearn
    from mlflow.models import infer_signature

    import localml.automl.model as model_module

    cloudpickle.register_pickle_by_value(model_module)
    shutil.rmtree(folder, ignore_errors=True)
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        signature=infer_signature(sample, model.predict(sample)),
    )


def save_table(frame: pd.DataFrame, folder: Path) -> None:
    """The rows as an MLTable folder, so a later job (a refined model's comparison) can score the same rows."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "MLTable").write_text("paths:\n  - file: ./data.csv\ntransformations:\n  - read_delimited:\n      delimiter: ','\n")


def write_generated_code(tracking: Tracking, settings: AutoMLSettings, search: Search, estimator, parent: str, best: dict,
                         algorithm: str, validation: str) -> None:
    """The best model's training script, in the job's outputs and the best run's, where Azure puts it
    (with the model, so the script's result can be compared with the model it reproduces)."""
    from amlkit.automl.generated_code import FOLDER, SCRIPT_FILE
    from localml.automl import codegen

    score = best["logged_metric"].get(settings.primary_metric)
    try:
        files = codegen.generate(settings, search.featurizer, estimator, search.classes, parent, best["run_id"], algorithm, score, validation)
    except codegen.CodeGenerationError as error:
        log(f"no training script generated: {error}")
        return
    folder = Path("outputs") / FOLDER
    codegen.write(folder, files, {
        "job": parent, "best_run": best["run_id"], "algorithm": algorithm, "task": settings.task,
        "target_column": settings.target_column, "primary_metric": settings.primary_metric, "score": score,
        "hyperparameters": codegen.hyperparameters(estimator),
    })
    tracking.client.log_artifacts(best["run_id"], str(folder), f"outputs/{FOLDER}")
    tracking.client.log_artifacts(best["run_id"], str(Path("outputs") / MODEL_FOLDER), f"outputs/{MODEL_FOLDER}")
    log(f"the best model's training script: outputs/{FOLDER}/{SCRIPT_FILE}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="localml.automl.driver")
    parser.add_argument("--config", required=True)
    parser.add_argument("--training_data", required=True)
    parser.add_argument("--validation_data")
    parser.add_argument("--test_data")
    parser.add_argument("--best_model", required=True)
    return parser.parse_args(argv)


def _read_settings(config: Path) -> AutoMLSettings:
    settings = AutoMLSettings(**json.loads(config.read_text()))
    for warning in settings.warnings:
        log(f"warning: {warning}")
    return settings


def _load_tables(args: argparse.Namespace, settings: AutoMLSettings):
    """The training, validation and test rows, and how many rows of each were left out for a missing target."""
    data = load_mltable(args.training_data)
    check_training_table(data, settings)
    validation = load_mltable(args.validation_data) if args.validation_data else None
    test = load_mltable(args.test_data) if args.test_data else None
    # rows without a target can neither be trained on nor scored: leave them out, as Azure does
    missing_target = {}
    data, missing_target["training"] = drop_missing_target(data, settings)
    if validation is not None:
        validation, missing_target["validation"] = drop_missing_target(validation, settings)
    if test is not None:
        test, missing_target["test"] = drop_missing_target(test, settings)
    for which, count in missing_target.items():
        if count:
            log(f"left out {count} {which} rows whose target '{settings.target_column}' is missing")
    if test is None and settings.test_data_size:
        from sklearn.model_selection import train_test_split

        data, test = train_test_split(data, test_size=settings.test_data_size, random_state=RANDOM_STATE)
        log(f"held out {len(test)} rows ({settings.test_data_size:.0%}) as test data")
    return data, validation, test, missing_target


def _plan_featurization(data: pd.DataFrame, settings: AutoMLSettings, method: str) -> FeaturizationPlan:
    plan = plan_featurization(data, settings, method)
    for guardrail in plan.guardrails:
        log(f"guardrail {guardrail.name}: {guardrail.status}. {guardrail.description}")
    for column, reason in plan.dropped.items():
        log(f"column {column} {reason}")
    return plan


def _run_search(search: Search, settings: AutoMLSettings, started: float):
    """FLAML's search within what is left of the job's timeout; returns FLAML's AutoML and its trials."""
    budget = settings.timeout_seconds - (time.time() - started) - FINISHING_RESERVE_SECONDS
    order = search_order(settings.estimators)
    log(f"searching {', '.join(order)} for the best {settings.primary_metric} within {max(budget, 1):.0f} s; "
        f"each starts from a strong configuration, {order[0]} first")
    log_file = Path("logs") / "flaml.log"
    log_file.parent.mkdir(exist_ok=True)
    search_started = time.time()
    automl = search.run(max(budget, 1.0), log_file)
    return automl, read_trials(log_file, search_started)


def _best_algorithm(automl, best: dict, settings: AutoMLSettings) -> str:
    """The best trial's algorithm, or StackEnsemble when FLAML stacked the best configurations."""
    if not settings.stack_ensemble:
        return best["algorithm"]
    members = [name for name, _ in getattr(automl.model, "estimators", [])]
    if not members:
        log("no stacked ensemble: only one algorithm finished a trial, so the best single model is kept")
        return best["algorithm"]
    log(f"the model is a stacked ensemble of the best {', '.join(members)} configurations")
    return "StackEnsemble"


def _save_best_model(search: Search, estimator, data: pd.DataFrame, best_model: str):
    """The featurization and the estimator as one MLflow model, in the job's outputs and its best_model output."""
    from localml.automl.model import AutoMLModel

    plan = search.plan
    model = AutoMLModel(search.featurizer, estimator, plan.feature_columns, search.classes)
    model_dir = Path("outputs") / MODEL_FOLDER
    save_model(model, data[plan.feature_columns].head(5), model_dir)
    shutil.copytree(model_dir, best_model, dirs_exist_ok=True)
    return model


def _save_onnx_model(model, data: pd.DataFrame, test: pd.DataFrame | None, tracking: Tracking, best_run: str) -> dict:
    """The best model as ONNX, in the job's outputs and the best run's as Azure keeps it, checked against the
    MLflow model on the held-out rows (the training rows when none are held out)."""
    from localml.automl import onnx_export

    columns = list(model.feature_columns)
    try:
        graph = onnx_export.convert(model, data[columns].head(5))
    except onnx_export.OnnxConversionError as error:
        log(f"no outputs/{onnx_export.ONNX_FILE}: the best model could not be converted to ONNX ({error})")
        return {"error": str(error)}
    path = Path("outputs") / onnx_export.ONNX_FILE
    path.write_bytes(graph.SerializeToString())
    tracking.client.log_artifact(best_run, str(path), "outputs")
    rows = (test if test is not None else data)[columns].head(ONNX_CHECK_ROWS)
    expected, answered = np.asarray(model.predict(rows)), onnx_export.predict(path, rows)
    if model.classes is None:
        agreed = np.isclose(answered, expected, rtol=1e-4, atol=1e-6)
    else:
        agreed = answered.astype(str) == expected.astype(str)
    log(f"outputs/{onnx_export.ONNX_FILE}: the ONNX model agrees with the MLflow model on {agreed.sum()} of {len(rows)} "
        f"{'held-out' if test is not None else 'training'} rows")
    return {"path": f"outputs/{onnx_export.ONNX_FILE}", "rows_checked": len(rows), "rows_agreeing": int(agreed.sum())}


def _best_metrics(search: Search, estimator, best: dict, test: pd.DataFrame | None) -> dict:
    """The best trial's validation metrics, and the model's scores on the test rows as ``test_<metric>``."""
    settings, columns = search.settings, search.plan.feature_columns
    metrics = dict(best["logged_metric"])
    if test is not None:
        test_scores = search.scores(estimator, search.featurizer.transform(test[columns]), search.encode(test[settings.target_column]))
        metrics.update({f"test_{k}": v for k, v in test_scores.items()})
        log("test data: " + ", ".join(f"{k}={v:.4f}" for k, v in test_scores.items() if k == settings.primary_metric or k == "accuracy"))
    return metrics


def _explain(model, features: pd.DataFrame, settings: AutoMLSettings) -> dict | None:
    if not settings.explain:
        return None
    from amlkit.explain import explain_model

    explanation = explain_model(model, features, settings.task, Path("outputs") / "explanations")
    log("explanations written to outputs/explanations")
    return explanation


def main(argv: list[str] | None = None) -> None:
    # cloudpickle is chosen on purpose (see save_model); MLflow's notice about it is noise in the job log
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    args = _parse_args(argv)
    started = time.time()
    settings = _read_settings(Path(args.config))
    data, validation, test, missing_target = _load_tables(args, settings)
    method = validation_method(settings, len(data), validation is not None)
    tracking = Tracking.for_uri(os.environ["MLFLOW_TRACKING_URI"])
    parent = os.environ["MLFLOW_RUN_ID"]
    # logged once the validation scheme is chosen, so the run shows the folds or holdout the search used
    tracking.client.log_batch(parent, params=_param_entities({**settings.mlflow_params(), "validation": method}))
    plan = _plan_featurization(data, settings, method)

    search = Search(settings, data, validation, plan)
    automl, trials = _run_search(search, settings, started)
    best = record_child_runs(tracking, parent, os.environ["MLFLOW_EXPERIMENT_ID"], trials, settings)
    log(f"{len(trials)} trials; best: {best['run_id']} ({best['algorithm']}), "
        f"{settings.primary_metric} = {best['logged_metric'].get(settings.primary_metric, float('nan')):.4f}")

    estimator = getattr(automl.model, "estimator", automl.model)
    algorithm = _best_algorithm(automl, best, settings)
    model = _save_best_model(search, estimator, data, args.best_model)
    onnx_model = _save_onnx_model(model, data, test, tracking, best["run_id"]) if settings.onnx_compatible else None
    metrics = _best_metrics(search, estimator, best, test)
    tracking.client.log_batch(parent, metrics=_metric_entities(metrics, time.time()))
    tracking.client.set_tag(parent, "automl_best_child_run_id", best["run_id"])
    if test is not None:
        save_table(test, Path("outputs") / TEST_DATA_FOLDER)
    write_generated_code(tracking, settings, search, estimator, parent, best, algorithm, method)
    explanation = _explain(model, data[plan.feature_columns], settings)

    summary = {
        "best_child_run_id": best["run_id"],
        "best_algorithm": algorithm,
        "best_config": best["config"],
        "primary_metric": settings.primary_metric,
        "best_score": best["logged_metric"].get(settings.primary_metric),
        "metrics": metrics,
        "trials": len(trials),
        "guardrails": as_records(plan.guardrails),
        "dropped_columns": plan.dropped,
        "rows_missing_target": missing_target,
        "explanation": explanation,
        "onnx_model": onnx_model,
    }
    Path("outputs", SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    log(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
