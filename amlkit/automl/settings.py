"""An Azure ML AutoML job's settings, checked and translated into what localml's engine (FLAML) needs.

Azure's names arrive in two spellings (``LightGBM`` as written, ``light_gbm`` after the SDK's
own round trip), so every name is compared in a normalized form.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from amlkit.errors import SpecError, UnsupportedFeatureError

CLASSIFICATION_METRICS = (
    "accuracy", "AUC_weighted", "average_precision_score_weighted", "norm_macro_recall", "precision_score_weighted",
)
REGRESSION_METRICS = (
    "spearman_correlation", "normalized_root_mean_squared_error", "r2_score", "normalized_mean_absolute_error",
)
#: Metrics where smaller is better; every other primary metric is maximized.
MINIMIZED_METRICS = frozenset({"normalized_root_mean_squared_error", "normalized_mean_absolute_error"})

#: Azure training algorithm -> FLAML estimator, per task.
CLASSIFICATION_ALGORITHMS = {
    "LogisticRegression": "lrl2",
    "SGD": "sgd",
    "KNN": "kneighbor",
    "RandomForest": "rf",
    "ExtremeRandomTrees": "extra_tree",
    "LightGBM": "lgbm",
    "GradientBoosting": "histgb",
    "XGBoostClassifier": "xgboost",
}
REGRESSION_ALGORITHMS = {
    "ElasticNet": "enet",
    "LassoLars": "lassolars",
    "SGD": "sgd",
    "KNN": "kneighbor",
    "RandomForest": "rf",
    "ExtremeRandomTrees": "extra_tree",
    "LightGBM": "lgbm",
    "GradientBoosting": "histgb",
    "XGBoostRegressor": "xgboost",
}
#: Algorithms an ONNX-compatible search leaves out, and why: the ONNX model must predict what the MLflow model does.
NOT_ONNX_CONVERTIBLE = {
    "GradientBoosting": "skl2onnx cannot convert scikit-learn's HistGradientBoosting",
    "KNN": "ONNX runtimes order neighbours tied on distance differently, so some predictions would differ",
}
#: Azure's algorithm names that localml has no FLAML estimator for: allowing one is an error, blocking one is a no-op.
UNAVAILABLE_CLASSIFICATION_ALGORITHMS = ("MultinomialNaiveBayes", "BernoulliNaiveBayes", "SVM", "LinearSVM", "DecisionTree")
UNAVAILABLE_REGRESSION_ALGORITHMS = ("DecisionTree",)
#: Azure's transformer names that may be blocked; localml's featurization uses only the one-hot encoders.
KNOWN_TRANSFORMERS = (
    "TextTargetEncoder", "OneHotEncoder", "CatTargetEncoder", "TfIdf", "WoETargetEncoder", "LabelEncoder",
    "WordEmbedding", "NaiveBayes", "CountVectorizer", "HashOneHotEncoder",
)
COLUMN_PURPOSES = ("Numeric", "Categorical", "Ignore")
DEFAULT_TIMEOUT_MINUTES = 15.0


def algorithm_table(task: str) -> dict[str, str]:
    """Azure's algorithm names -> FLAML's estimators, for ``task``."""
    return CLASSIFICATION_ALGORITHMS if task == "classification" else REGRESSION_ALGORITHMS


def normalize(name: str) -> str:
    return str(name).replace("_", "").replace("-", "").lower()


def canonical(name: str, known: tuple[str, ...] | dict, what: str) -> str:
    """Azure's spelling of ``name`` among ``known``; a clear error naming the options otherwise."""
    by_key = {normalize(k): k for k in known}
    value = str(getattr(name, "value", name))
    if normalize(value) not in by_key:
        raise SpecError(f"Unknown {what} '{value}'. Use one of: {', '.join(known)}.")
    return by_key[normalize(value)]


@dataclass
class AutoMLSettings:
    """Everything the AutoML driver needs, as plain data (stored with the job as JSON)."""

    task: str
    target_column: str
    primary_metric: str
    estimators: list[str]
    n_cross_validations: int | None = None
    validation_data_size: float | None = None
    test_data_size: float | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_MINUTES * 60
    trial_timeout_seconds: float | None = None
    max_trials: int | None = None
    early_termination: bool = True
    exit_score: float | None = None
    stack_ensemble: bool = False
    featurization: str = "auto"
    blocked_transformers: list[str] = field(default_factory=list)
    column_purposes: dict[str, str] = field(default_factory=dict)
    explain: bool = False
    weight_column: str | None = None
    warnings: list[str] = field(default_factory=list)
    # as the job gave them (Azure's names), for the record: ``estimators`` is what runs
    allowed_algorithms: list[str] = field(default_factory=list)
    blocked_algorithms: list[str] = field(default_factory=list)
    max_concurrent_trials: int | None = None
    onnx_compatible: bool = False

    @property
    def maximize(self) -> bool:
        return self.primary_metric not in MINIMIZED_METRICS

    def to_dict(self) -> dict:
        return asdict(self)

    def mlflow_params(self) -> dict[str, str]:
        """The settings as MLflow parameters of the AutoML parent run, under the Azure SDK's names (unset ones left out)."""
        names = {estimator: name for name, estimator in algorithm_table(self.task).items()}
        values = {
            "task_type": self.task,
            "primary_metric": self.primary_metric,
            "target_column_name": self.target_column,
            "weight_column_name": self.weight_column,
            "timeout_minutes": self.timeout_seconds / 60,
            "trial_timeout_minutes": None if self.trial_timeout_seconds is None else self.trial_timeout_seconds / 60,
            "max_trials": self.max_trials,
            "max_concurrent_trials": self.max_concurrent_trials,
            "enable_early_termination": self.early_termination,
            "exit_score": self.exit_score,
            "allowed_training_algorithms": self.allowed_algorithms,
            "blocked_training_algorithms": self.blocked_algorithms,
            "training_algorithms": [names.get(estimator, estimator) for estimator in self.estimators],
            "n_cross_validations": self.n_cross_validations,
            "validation_data_size": self.validation_data_size,
            "test_data_size": self.test_data_size,
            "featurization": self.featurization,
            "blocked_transformers": self.blocked_transformers,
            "column_name_and_types": self.column_purposes,
            "enable_stack_ensemble": self.stack_ensemble,
            "enable_model_explainability": self.explain,
            "enable_onnx_compatible_models": self.onnx_compatible or None,
        }
        return {key: _param_text(value) for key, value in values.items() if value is not None and value != [] and value != {}}


def _param_text(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_from_job(job) -> AutoMLSettings:
    """Check an AutoML job entity (ClassificationJob / RegressionJob) and translate its settings."""
    task = normalize(getattr(job.task_type, "value", job.task_type))
    if task not in ("classification", "regression"):
        raise UnsupportedFeatureError(
            f"AutoML task '{task}' yet", "localml runs classification and regression; forecasting, vision and NLP are not available."
        )
    metrics = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    default_metric = "accuracy" if task == "classification" else "normalized_root_mean_squared_error"
    primary_metric = canonical(job.primary_metric or default_metric, metrics, f"primary metric for {task}")
    if not job.target_column_name:
        raise SpecError("The AutoML job has no target_column_name: name the column to predict.")
    if getattr(job, "cv_split_column_names", None):
        raise UnsupportedFeatureError("cv_split_column_names", "Use n_cross_validations or validation data.")
    allowed, blocked = _algorithms(job.training, task)
    onnx_compatible = bool(getattr(job.training, "enable_onnx_compatible_models", False))
    settings = AutoMLSettings(
        task=task,
        target_column=job.target_column_name,
        primary_metric=primary_metric,
        estimators=_estimators(allowed, blocked, task, onnx_compatible),
        onnx_compatible=onnx_compatible,
        allowed_algorithms=allowed,
        blocked_algorithms=blocked,
        n_cross_validations=_cross_validations(job.n_cross_validations),
        validation_data_size=job.validation_data_size,
        test_data_size=job.test_data_size,
        explain=bool(getattr(job.training, "enable_model_explainability", False)),
        weight_column=job.weight_column_name,
    )
    _apply_limits(settings, job.limits)
    _apply_featurization(settings, job.featurization)
    training = job.training
    settings.stack_ensemble = bool(getattr(training, "enable_stack_ensemble", False))
    if settings.stack_ensemble and onnx_compatible:
        settings.stack_ensemble = False
        settings.warnings.append("ONNX-compatible searches keep the best single model: no stacked ensemble is built.")
    if getattr(training, "enable_vote_ensemble", False):
        settings.warnings.append("Vote ensembles are not built locally; enable_stack_ensemble builds a stacked ensemble.")
    if getattr(training, "enable_dnn_training", False):
        raise UnsupportedFeatureError("set_training(enable_dnn_training=True)")
    return settings


def _algorithms(training, task: str) -> tuple[list[str], list[str]]:
    """The allowed and the blocked algorithms, in Azure's spelling."""
    known = (*algorithm_table(task), *_unavailable(task))
    allowed = [canonical(a, known, f"{task} algorithm") for a in (getattr(training, "allowed_training_algorithms", None) or [])]
    blocked = [canonical(a, known, f"{task} algorithm") for a in (getattr(training, "blocked_training_algorithms", None) or [])]
    return allowed, blocked


def _estimators(allowed: list[str], blocked: list[str], task: str, onnx_compatible: bool) -> list[str]:
    table = algorithm_table(task)
    missing = [a for a in allowed if a in _unavailable(task)]
    if missing:
        raise UnsupportedFeatureError(
            f"the {task} algorithm(s) {', '.join(missing)}", f"Allow any of: {', '.join(table)}."
        )
    candidates = allowed or table
    if onnx_compatible:
        convertible = [a for a in table if a not in NOT_ONNX_CONVERTIBLE]
        unconvertible = [a for a in allowed if a in NOT_ONNX_CONVERTIBLE]
        if unconvertible:
            reasons = "; ".join(f"{a}: {NOT_ONNX_CONVERTIBLE[a]}" for a in unconvertible)
            raise SpecError(
                f"enable_onnx_compatible_models is set, but {', '.join(unconvertible)} cannot be used ({reasons}). "
                f"Allow only ONNX-compatible algorithms ({', '.join(convertible)}), or turn ONNX compatibility off."
            )
        candidates = [a for a in candidates if a not in NOT_ONNX_CONVERTIBLE]
    chosen = [a for a in candidates if a not in blocked]
    if not chosen:
        raise SpecError("Every training algorithm is blocked: allow at least one.")
    return [table[a] for a in chosen]


def _unavailable(task: str) -> tuple[str, ...]:
    return UNAVAILABLE_CLASSIFICATION_ALGORITHMS if task == "classification" else UNAVAILABLE_REGRESSION_ALGORITHMS


def _cross_validations(value) -> int | None:
    if value is None or str(value).lower() == "auto":
        return None
    folds = int(value)
    if folds < 2:
        raise SpecError(f"n_cross_validations must be at least 2, got {folds}.")
    return folds


def _apply_limits(settings: AutoMLSettings, limits) -> None:
    if limits is None:
        return
    if limits.timeout_minutes is not None:
        if limits.timeout_minutes <= 0:
            raise SpecError(f"timeout_minutes must be positive, got {limits.timeout_minutes}.")
        settings.timeout_seconds = float(limits.timeout_minutes) * 60
    if limits.trial_timeout_minutes is not None:
        settings.trial_timeout_seconds = float(limits.trial_timeout_minutes) * 60
    if limits.max_trials is not None:
        if limits.max_trials < 1:
            raise SpecError(f"max_trials must be at least 1, got {limits.max_trials}.")
        settings.max_trials = int(limits.max_trials)
    if limits.enable_early_termination is not None:
        settings.early_termination = bool(limits.enable_early_termination)
    settings.exit_score = limits.exit_score
    settings.max_concurrent_trials = limits.max_concurrent_trials
    if (limits.max_concurrent_trials or 1) > 1:
        settings.warnings.append(
            f"max_concurrent_trials={limits.max_concurrent_trials}: localml runs trials one at a time, each using every core."
        )
    if getattr(limits, "max_nodes", None) not in (None, 1) or getattr(limits, "max_cores_per_trial", None) not in (None, -1):
        settings.warnings.append("max_nodes and max_cores_per_trial do not apply to localml and are ignored.")


def _apply_featurization(settings: AutoMLSettings, featurization) -> None:
    if featurization is None:
        return
    mode = normalize(getattr(featurization.mode, "value", featurization.mode) or "auto")
    if mode not in ("auto", "custom", "off"):
        raise UnsupportedFeatureError(f"featurization mode '{featurization.mode}'", "Use 'auto', 'custom' or 'off'.")
    # 'custom' is Azure's automatic featurization with the customizations below (column purposes, blocked transformers)
    settings.featurization = "off" if mode == "off" else "auto"
    settings.blocked_transformers = [
        canonical(t, KNOWN_TRANSFORMERS, "blocked transformer") for t in (featurization.blocked_transformers or [])
    ]
    settings.column_purposes = {
        column: canonical(purpose, COLUMN_PURPOSES, f"purpose for column '{column}'")
        for column, purpose in (featurization.column_name_and_types or {}).items()
    }
    if getattr(featurization, "transformer_params", None):
        raise UnsupportedFeatureError("featurization transformer_params", "localml imputes numbers with the mean.")
