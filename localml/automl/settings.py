"""An Azure ML AutoML job's settings, checked and translated into what localml's engine (FLAML) needs.

Azure's names arrive in two spellings (``LightGBM`` as written, ``light_gbm`` after the SDK's
own round trip), so every name is compared in a normalized form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from localml.errors import LocalMLValidationError, UnsupportedFeatureError

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


def normalize(name: str) -> str:
    return str(name).replace("_", "").replace("-", "").lower()


def canonical(name: str, known: tuple[str, ...] | dict, what: str) -> str:
    """Azure's spelling of ``name`` among ``known``; a clear error naming the options otherwise."""
    by_key = {normalize(k): k for k in known}
    value = str(getattr(name, "value", name))
    if normalize(value) not in by_key:
        raise LocalMLValidationError(f"Unknown {what} '{value}'. Use one of: {', '.join(known)}.")
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

    @property
    def maximize(self) -> bool:
        return self.primary_metric not in MINIMIZED_METRICS

    def to_dict(self) -> dict:
        return asdict(self)


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
        raise LocalMLValidationError("The AutoML job has no target_column_name: name the column to predict.")
    if getattr(job, "cv_split_column_names", None):
        raise UnsupportedFeatureError("cv_split_column_names", "Use n_cross_validations or validation data.")
    settings = AutoMLSettings(
        task=task,
        target_column=job.target_column_name,
        primary_metric=primary_metric,
        estimators=_estimators(job.training, task),
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
    if getattr(training, "enable_vote_ensemble", False):
        settings.warnings.append("Vote ensembles are not built locally; enable_stack_ensemble builds a stacked ensemble.")
    for option in ("enable_dnn_training", "enable_onnx_compatible_models"):
        if getattr(training, option, False):
            raise UnsupportedFeatureError(f"set_training({option}=True)")
    return settings


def _estimators(training, task: str) -> list[str]:
    table = CLASSIFICATION_ALGORITHMS if task == "classification" else REGRESSION_ALGORITHMS
    unavailable = UNAVAILABLE_CLASSIFICATION_ALGORITHMS if task == "classification" else UNAVAILABLE_REGRESSION_ALGORITHMS
    known = (*table, *unavailable)
    allowed = [canonical(a, known, f"{task} algorithm") for a in (getattr(training, "allowed_training_algorithms", None) or [])]
    blocked = {canonical(a, known, f"{task} algorithm") for a in (getattr(training, "blocked_training_algorithms", None) or [])}
    missing = [a for a in allowed if a in unavailable]
    if missing:
        raise UnsupportedFeatureError(
            f"the {task} algorithm(s) {', '.join(missing)}", f"Allow any of: {', '.join(table)}."
        )
    chosen = [a for a in (allowed or table) if a not in blocked]
    if not chosen:
        raise LocalMLValidationError("Every training algorithm is blocked: allow at least one.")
    return [table[a] for a in chosen]


def _cross_validations(value) -> int | None:
    if value is None or str(value).lower() == "auto":
        return None
    folds = int(value)
    if folds < 2:
        raise LocalMLValidationError(f"n_cross_validations must be at least 2, got {folds}.")
    return folds


def _apply_limits(settings: AutoMLSettings, limits) -> None:
    if limits is None:
        return
    if limits.timeout_minutes is not None:
        if limits.timeout_minutes <= 0:
            raise LocalMLValidationError(f"timeout_minutes must be positive, got {limits.timeout_minutes}.")
        settings.timeout_seconds = float(limits.timeout_minutes) * 60
    if limits.trial_timeout_minutes is not None:
        settings.trial_timeout_seconds = float(limits.trial_timeout_minutes) * 60
    if limits.max_trials is not None:
        if limits.max_trials < 1:
            raise LocalMLValidationError(f"max_trials must be at least 1, got {limits.max_trials}.")
        settings.max_trials = int(limits.max_trials)
    if limits.enable_early_termination is not None:
        settings.early_termination = bool(limits.enable_early_termination)
    settings.exit_score = limits.exit_score
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
