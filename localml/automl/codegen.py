"""The training script of an AutoML job's best model, written out as Azure writes ``outputs/generated_code/``.

The script is plain scikit-learn (plus the estimator's own library): the fitted featurizer's
parameters are written as code, the estimator's tuned hyperparameters become argparse
options with the chosen values as defaults, and the metric code is the very code the AutoML
job scored with, so running the script reproduces the job's best score within noise.
"""

from __future__ import annotations

import importlib
import inspect
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from amlkit import metrics
from amlkit.automl.generated_code import ENVIRONMENT_FILE, SCRIPT_FILE
from amlkit.automl.settings import AutoMLSettings

#: Estimator parameters about how it runs, not what it learns: fixed in the code rather than offered as options.
RUNTIME_PARAMETERS = frozenset({"n_jobs", "verbose", "verbosity", "callbacks", "random_state"})
#: Distributions the script imports, pinned in the environment (the estimator's library is added).
BASE_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "mlflow")
LIBRARY_PACKAGES = {"sklearn": "scikit-learn", "lightgbm": "lightgbm", "xgboost": "xgboost"}
#: Azure's MLTable reader, for the script's data; it cannot be installed beside localml (it pins cloudpickle<3),
#: so its pin is the version checked to read MLTable folders with the pins above, not the installed one.
MLTABLE_REQUIREMENT = "mltable==1.7.0"


class CodeGenerationError(ValueError):
    """The best model is of a kind no standalone script is written for."""


def public_path(cls: type) -> tuple[str, str]:
    """Where ``cls`` is imported from by users: its module up to the first private part
    (``sklearn.ensemble._forest`` -> ``sklearn.ensemble``), when the class is found there."""
    parts = cls.__module__.split(".")
    private = next((i for i, part in enumerate(parts) if part.startswith("_")), len(parts))
    public = ".".join(parts[:private])
    try:
        found = getattr(importlib.import_module(public), cls.__name__, None) is cls
    except ImportError:
        found = False
    return (public if found else cls.__module__), cls.__name__


def hyperparameters(estimator) -> dict[str, Any]:
    """The estimator's parameters that differ from its class defaults, as plain Python values."""
    defaults = type(estimator)().get_params()
    chosen = {}
    for name, value in estimator.get_params().items():
        value = value.item() if isinstance(value, np.generic) else value
        if name in RUNTIME_PARAMETERS or not isinstance(value, (bool, int, float, str)):
            continue
        if name in defaults and _same(defaults[name], value):
            continue
        chosen[name] = value
    return chosen


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))


def _runtime_arguments(estimator) -> dict[str, Any]:
    """How the estimator ran, kept as it was: the same seed draws the same feature samples, so scores match."""
    params, defaults = estimator.get_params(), type(estimator)().get_params()
    fixed = {"n_jobs": -1} if "n_jobs" in params else {}
    for name in ("random_state", "verbose", "verbosity"):
        value = params.get(name)
        value = value.item() if isinstance(value, np.generic) else value
        if name in params and isinstance(value, (int, str)) and not _same(defaults.get(name), value):
            fixed[name] = value
    return fixed


def _imports(estimators: list) -> list[str]:
    """One ``from module import Class`` per estimator class used, nested ones included."""
    found = {("sklearn.pipeline", "Pipeline")}

    def visit(estimator):
        found.add(public_path(type(estimator)))
        for value in estimator.get_params(deep=True).values():
            if hasattr(value, "get_params") and not isinstance(value, type):
                found.add(public_path(type(value)))

    for estimator in estimators:
        visit(estimator)
    return [f"from {module} import {name}" for module, name in sorted(found)]


def _argument(name: str, value: Any) -> str:
    kind = "boolean" if isinstance(value, bool) else type(value).__name__
    return f"    parser.add_argument({'--' + name!r}, type={kind}, default={value!r})"


def _validation(settings: AutoMLSettings) -> str:
    if settings.n_cross_validations:
        return f"N_CROSS_VALIDATIONS = {settings.n_cross_validations}\nVALIDATION_DATA_SIZE = None"
    return f"N_CROSS_VALIDATIONS = None\nVALIDATION_DATA_SIZE = {settings.validation_data_size!r}"


def environment_spec(estimator, name: str) -> str:
    """A conda specification (pip section) pinning what the script imports to the versions that trained the model."""
    library = LIBRARY_PACKAGES.get(type(estimator).__module__.split(".")[0])
    packages = [*BASE_PACKAGES, *([library] if library and library not in BASE_PACKAGES else [])]
    pins = [f"{package}=={metadata.version(package)}" for package in packages] + [MLTABLE_REQUIREMENT]
    python = ".".join(platform.python_version_tuple()[:2])
    return (
        f"# The environment of the generated training script: the versions the AutoML job trained with.\n"
        f"name: {name}\nchannels:\n  - conda-forge\ndependencies:\n  - python={python}\n  - pip\n  - pip:\n"
        + "".join(f"      - {pin}\n" for pin in pins)
    )


def generate(
    settings: AutoMLSettings,
    featurizer,
    estimator,
    classes: list | None,
    job_name: str,
    best_run: str,
    algorithm: str,
    score: float | None,
    validation: str,
) -> dict[str, str]:
    """The files of ``outputs/generated_code``: the training script and its environment, by file name."""
    from sklearn.ensemble import StackingClassifier, StackingRegressor

    if isinstance(estimator, (StackingClassifier, StackingRegressor)):
        raise CodeGenerationError(f"the best model of {job_name} is an ensemble; scripts are written for single models")
    chosen = hyperparameters(estimator)
    fixed = _runtime_arguments(estimator)
    module, estimator_class = public_path(type(estimator))
    classification = settings.task == "classification"
    # XGBoost learns class indices 0..n-1 only; the other libraries take the labels as they are
    needs_indices = classification and module.startswith("xgboost") and list(classes) != list(range(len(classes)))
    arguments = [f"{name}=args.{name}" for name in chosen] + [f"{name}={value!r}" for name, value in fixed.items()]
    score_text = f"{settings.primary_metric} {score:.4f}" if score is not None else settings.primary_metric
    replacements = {
        "JOB": job_name,
        "BEST_RUN": best_run,
        "ALGORITHM": algorithm,
        "SCORE": score_text,
        "VALIDATION": validation.rstrip("."),
        "IMPORTS": "\n".join(_imports([featurizer, estimator])),
        "TASK": settings.task,
        "TARGET": repr(settings.target_column),
        "WEIGHT": repr(settings.weight_column),
        "FEATURES": repr(list(featurizer.feature_names_in_)),
        "PRIMARY_METRIC": repr(settings.primary_metric),
        "METRIC_NAME": settings.primary_metric,
        "TEST_DATA_SIZE": repr(settings.test_data_size),
        "VALIDATION_SETTINGS": _validation(settings),
        "ARGUMENTS": "\n".join(_argument(name, value) for name, value in chosen.items()) or "    pass",
        "FEATURIZER": featurizer.__repr__(N_CHAR_MAX=1_000_000),
        "ESTIMATOR": f"{estimator_class}(\n        " + ",\n        ".join(arguments) + ",\n    )" if arguments else f"{estimator_class}()",
        "FIT_LABELS": "label_indices(y, classes)" if needs_indices else "y",
        "METRICS": inspect.getsource(metrics.classification_metrics if classification else metrics.regression_metrics),
        "SCORE_CALL": (
            "classification_metrics(label_indices(y, classes), model.predict_proba(X), len(classes))"
            if classification else "regression_metrics(y, model.predict(X), target_range)"
        ),
    }
    script = TEMPLATE
    for key, value in replacements.items():
        script = script.replace(f"@{key}@", value)
    return {SCRIPT_FILE: script, ENVIRONMENT_FILE: environment_spec(estimator, f"{job_name}-env")}


def write(folder: Path, files: dict[str, str], description: dict) -> None:
    """The files, and ``generated_from.json`` saying which job, run and hyperparameters they reproduce."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "generated_from.json").write_text(json.dumps(description, indent=2, default=str))


TEMPLATE = '''"""Training script for the best model of AutoML job @JOB@: @ALGORITHM@, @SCORE@ (@VALIDATION@).

Generated from its best run @BEST_RUN@: the same featurization and estimator, the tuned
hyperparameters as options (their defaults are the values AutoML chose). Change an option
(--learning_rate 0.05) or the code, then run it as a command job:

    command(code="<this folder>", command="python script.py --training_data ${{inputs.training_data}}",
            inputs={"training_data": Input(type="mltable", path="azureml:<data>:<version>")},
            environment="<environment>")

It logs the validation metrics (the primary metric is @METRIC_NAME@), the test_* metrics
on the rows AutoML held out, the hyperparameters, and the model (MLflow format, outputs/model).
"""

import argparse
import logging
import shutil
import warnings
from pathlib import Path

import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn import metrics as sk
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
@IMPORTS@

TASK = "@TASK@"
TARGET_COLUMN = @TARGET@
WEIGHT_COLUMN = @WEIGHT@
FEATURE_COLUMNS = @FEATURES@
PRIMARY_METRIC = @PRIMARY_METRIC@
#: AutoML held these rows out as test data (same split: same fraction, same seed)
TEST_DATA_SIZE = @TEST_DATA_SIZE@
@VALIDATION_SETTINGS@
RANDOM_STATE = 0

# the model is saved with cloudpickle on purpose (it holds the featurizer); MLflow's notices about that are noise here
logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")


def boolean(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training_data", required=True, help="MLTable folder (or CSV / Parquet file)")
    parser.add_argument("--validation_data", help="Validation data, if the AutoML job had it")
    parser.add_argument("--test_data", help="Test data, if the AutoML job had it")
    parser.add_argument("--model_output", default="outputs/model", help="Where the MLflow model is saved")
@ARGUMENTS@
    return parser.parse_args()


def load_table(path: str) -> pd.DataFrame:
    """The rows of a CSV / Parquet file or an MLTable folder (Azure's mltable package, or localml's reader)."""
    source = Path(path)
    if source.is_file():
        return pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    try:
        import mltable
    except ImportError:
        try:
            from amlkit.mltable import load_mltable
        except ImportError:
            raise SystemExit(f"Reading the MLTable folder {path} needs the mltable package: add it to the environment.")
        return load_mltable(str(source))
    return mltable.load(str(source)).to_pandas_dataframe()


def build_model(args) -> Pipeline:
    featurizer = @FEATURIZER@
    estimator = @ESTIMATOR@
    return Pipeline([("featurize", featurizer), ("model", estimator)])


def label_indices(y, classes):
    return np.searchsorted(classes, np.asarray(y))


@METRICS@

def scores(model, X, y, classes, target_range):
    return @SCORE_CALL@


def validation_scores(args, train, validation, classes, target_range) -> dict:
    """The primary metric's validation scheme of the AutoML job: k-fold cross-validation or a holdout."""
    X, y = train[FEATURE_COLUMNS], train[TARGET_COLUMN]
    if validation is not None:
        folds = [(train, validation)]
    elif N_CROSS_VALIDATIONS:
        splitter = (StratifiedKFold if TASK == "classification" else KFold)(N_CROSS_VALIDATIONS, shuffle=True, random_state=RANDOM_STATE)
        folds = [(train.iloc[fit], train.iloc[held]) for fit, held in splitter.split(X, y)]
    else:
        stratify = y if TASK == "classification" else None
        folds = [train_test_split(train, test_size=VALIDATION_DATA_SIZE, random_state=RANDOM_STATE, stratify=stratify)]
    per_fold = []
    for fit_rows, held_rows in folds:
        model = fit(args, fit_rows, classes)
        per_fold.append(scores(model, held_rows[FEATURE_COLUMNS], held_rows[TARGET_COLUMN], classes, target_range))
    return {name: float(np.mean([fold[name] for fold in per_fold])) for name in per_fold[0]}


def fit_labels(y, classes):
    return @FIT_LABELS@


def fit(args, rows: pd.DataFrame, classes) -> Pipeline:
    """A new model fitted on ``rows`` (weighted by the job's weight column, when it had one)."""
    weights = {"model__sample_weight": rows[WEIGHT_COLUMN].to_numpy(dtype=float)} if WEIGHT_COLUMN else {}
    return build_model(args).fit(rows[FEATURE_COLUMNS], fit_labels(rows[TARGET_COLUMN], classes), **weights)


def main():
    args = parse_args()
    data = load_table(args.training_data).dropna(subset=[TARGET_COLUMN])
    validation = load_table(args.validation_data).dropna(subset=[TARGET_COLUMN]) if args.validation_data else None
    test = load_table(args.test_data).dropna(subset=[TARGET_COLUMN]) if args.test_data else None
    if test is None and TEST_DATA_SIZE:
        data, test = train_test_split(data, test_size=TEST_DATA_SIZE, random_state=RANDOM_STATE)
    labels = data[TARGET_COLUMN]
    classes = np.array(sorted(pd.concat([labels, validation[TARGET_COLUMN]]).unique() if validation is not None else labels.unique())) if TASK == "classification" else None
    target_range = float(np.ptp(labels)) if TASK == "regression" else 0.0
    hyperparameters = {k: v for k, v in vars(args).items() if k not in ("training_data", "validation_data", "test_data", "model_output")}
    print(f"training on {len(data)} rows with {hyperparameters}", flush=True)
    mlflow.log_params(hyperparameters)
    validated = validation_scores(args, data, validation, classes, target_range)
    mlflow.log_metrics(validated)
    print(f"validation {PRIMARY_METRIC}: {validated.get(PRIMARY_METRIC, float('nan')):.4f}", flush=True)
    model = fit(args, data, classes)
    if test is not None:
        tested = scores(model, test[FEATURE_COLUMNS], test[TARGET_COLUMN], classes, target_range)
        mlflow.log_metrics({f"test_{name}": value for name, value in tested.items()})
        print(f"test {PRIMARY_METRIC} on {len(test)} held-out rows: {tested.get(PRIMARY_METRIC, float('nan')):.4f}", flush=True)
    shutil.rmtree(args.model_output, ignore_errors=True)
    mlflow.sklearn.save_model(
        model,
        args.model_output,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        signature=infer_signature(data[FEATURE_COLUMNS].head(5), model.predict(data[FEATURE_COLUMNS].head(5))),
    )
    print(f"model saved to {args.model_output}", flush=True)


if __name__ == "__main__":
    main()
'''
