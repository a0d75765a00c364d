"""AutoML featurization as Azure describes it: detect each column's purpose, impute, encode,
leave out identifiers; and the data guardrails that report what was found and done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from amlkit.automl.settings import AutoMLSettings
from amlkit.errors import SpecError

ID_UNIQUE_RATIO = 0.95
ID_WORDS = frozenset({"id", "uuid", "guid", "identifier"})
MAX_ONE_HOT_CATEGORIES = 30
IMBALANCE_RATIO = 0.2


@dataclass
class Guardrail:
    name: str
    status: str  # Azure's states: Passed, Done, Alerted
    description: str


@dataclass
class FeaturizationPlan:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    guardrails: list[Guardrail] = field(default_factory=list)

    @property
    def feature_columns(self) -> list[str]:
        return self.numeric + self.categorical

    def featurizer(self, blocked_transformers: list[str], scale: bool = True) -> ColumnTransformer:
        """The scikit-learn transformer this plan describes (unfitted); ``scale=False`` leaves numbers unscaled
        (an ONNX-compatible search: see ``localml.automl.onnx_export``)."""
        one_hot_blocked = {"OneHotEncoder", "HashOneHotEncoder"} & set(blocked_transformers)
        encoder = (
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
            if one_hot_blocked
            else OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONE_HOT_CATEGORIES, sparse_output=False)
        )
        parts = []
        if self.numeric:
            steps = [("impute", SimpleImputer(strategy="mean"))] + ([("scale", StandardScaler())] if scale else [])
            parts.append(("numeric", Pipeline(steps), self.numeric))
        if self.categorical:
            parts.append(
                ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("encode", encoder)]), self.categorical)
            )
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def check_training_table(data: pd.DataFrame, settings: AutoMLSettings) -> None:
    """The checks that must pass before any training starts."""
    target = settings.target_column
    if data.empty:
        raise SpecError("The training data has no rows: check the MLTable's paths and filters.")
    if target not in data.columns:
        raise SpecError(
            f"Target column '{target}' is not in the training data; its columns are: {', '.join(map(str, data.columns))}."
        )
    labels = data[target].dropna()
    if labels.empty:
        raise SpecError(f"Target column '{target}' has no values.")
    if settings.task == "classification" and labels.nunique() < 2:
        raise SpecError(
            f"Target column '{target}' has a single class ({_plain(labels.iloc[0])!r}): classification needs at least two."
        )
    if settings.task == "regression" and not pd.api.types.is_numeric_dtype(labels):
        raise SpecError(f"Target column '{target}' is not numeric ({labels.dtype}); regression needs numbers.")
    if data.shape[1] < 2:
        raise SpecError("The training data has no feature columns besides the target.")
    unknown = sorted(set(settings.column_purposes) - set(data.columns))
    if unknown:
        raise SpecError(f"Featurization names columns that are not in the data: {', '.join(unknown)}.")
    weight = settings.weight_column
    if weight and weight not in data.columns:
        raise SpecError(f"Weight column '{weight}' is not in the training data.")
    if weight and (not pd.api.types.is_numeric_dtype(data[weight]) or data[weight].isna().any() or (data[weight] < 0).any()):
        raise SpecError(f"Weight column '{weight}' must hold a non-negative number in every row.")


def drop_missing_target(data: pd.DataFrame, settings: AutoMLSettings) -> tuple[pd.DataFrame, int]:
    """The rows that have a target value, and how many were left out; as Azure does, rows without one are not trained on."""
    missing = data[settings.target_column].isna()
    return data[~missing], int(missing.sum())


def _plain(value):
    """A numpy scalar as the Python value it holds, so messages read ``1``, not ``np.int64(1)``."""
    return value.item() if hasattr(value, "item") else value


def plan_featurization(data: pd.DataFrame, settings: AutoMLSettings, validation: str) -> FeaturizationPlan:
    """Decide what happens to each feature column, and the guardrails that report it."""
    features = data.drop(columns=[c for c in (settings.target_column, settings.weight_column) if c])
    plan = FeaturizationPlan()
    for column in features.columns:
        purpose = settings.column_purposes.get(column) or _detect_purpose(features[column])
        if purpose == "Numeric":
            if not pd.api.types.is_numeric_dtype(features[column]):
                converted = pd.to_numeric(features[column], errors="coerce")
                if converted.notna().sum() < features[column].notna().sum():
                    raise SpecError(f"Column '{column}' is marked Numeric but holds values that are not numbers.")
            plan.numeric.append(column)
        elif purpose == "Categorical":
            plan.categorical.append(column)
        else:
            plan.dropped[column] = purpose
    if settings.featurization == "off":
        _check_featurization_off(features, plan)
    if not plan.feature_columns:
        raise SpecError(f"No usable feature columns are left: {plan.dropped}.")
    plan.guardrails = [
        Guardrail("Validation split handling", "Done", validation),
        *_class_balance(data[settings.target_column], settings.task),
        _missing_values(features[plan.feature_columns]),
        _high_cardinality(features, plan),
    ]
    return plan


def _detect_purpose(values: pd.Series) -> str:
    non_null = values.dropna()
    unique = non_null.nunique()
    if unique <= 1:
        return "ignored: constant"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "ignored: datetime columns are not featurized by localml"
    # text that is almost always unique cannot be encoded; an integer column only when its name says it is an id
    # (an integer measurement such as an income can be almost unique too)
    is_text = not pd.api.types.is_numeric_dtype(values)
    named_id = pd.api.types.is_integer_dtype(values) and _named_like_id(str(values.name))
    if (is_text or named_id) and len(non_null) >= 20 and unique / len(non_null) > ID_UNIQUE_RATIO:
        return "ignored: identifier (almost every value is unique)"
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "Categorical"
    return "Numeric"


def _named_like_id(name: str) -> bool:
    """PatientID, patient_id, CustomerId, id: one of the name's words (camelCase or snake_case) is 'id'."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)
    return any(word.lower() in ID_WORDS for word in words)


def _check_featurization_off(features: pd.DataFrame, plan: FeaturizationPlan) -> None:
    problems = [c for c in plan.categorical if not pd.api.types.is_numeric_dtype(features[c])]
    problems += [c for c in plan.feature_columns if features[c].isna().any()]
    if problems:
        raise SpecError(
            f"Featurization is off, but columns {sorted(set(problems))} are not numeric or have missing values. "
            "Turn featurization on (mode='auto') or clean the data."
        )
    plan.numeric, plan.categorical = plan.feature_columns, []


def _class_balance(target: pd.Series, task: str) -> list[Guardrail]:
    if task != "classification":
        return []
    counts = target.value_counts()
    ratio = counts.min() / counts.max()
    if ratio < IMBALANCE_RATIO:
        return [Guardrail(
            "Class balancing detection", "Alerted",
            f"The smallest class ({counts.idxmin()!r}, {counts.min()} rows) has {ratio:.0%} of the rows of the largest; "
            "consider a metric that handles imbalance, such as AUC_weighted.",
        )]
    return [Guardrail("Class balancing detection", "Passed", f"Classes are balanced (smallest/largest = {ratio:.2f}).")]


def _missing_values(features: pd.DataFrame) -> Guardrail:
    missing = {c: int(n) for c, n in features.isna().sum().items() if n}
    if not missing:
        return Guardrail("Missing feature values imputation", "Passed", "No missing values in the features.")
    listed = ", ".join(f"{c} ({n})" for c, n in missing.items())
    return Guardrail("Missing feature values imputation", "Done", f"Imputed (numbers: mean, categories: most frequent): {listed}.")


def _high_cardinality(features: pd.DataFrame, plan: FeaturizationPlan) -> Guardrail:
    identifiers = [c for c, why in plan.dropped.items() if why.startswith("ignored: identifier")]
    grouped = [c for c in plan.categorical if features[c].nunique() > MAX_ONE_HOT_CATEGORIES]
    if not identifiers and not grouped:
        return Guardrail("High cardinality feature detection", "Passed", "No high-cardinality features.")
    notes = []
    if identifiers:
        notes.append(f"left out as identifiers: {', '.join(identifiers)}")
    if grouped:
        notes.append(f"rare categories grouped (top {MAX_ONE_HOT_CATEGORIES} kept): {', '.join(grouped)}")
    return Guardrail("High cardinality feature detection", "Done", "; ".join(notes) + ".")


def as_records(guardrails: list[Guardrail]) -> list[dict]:
    return [vars(g) for g in guardrails]

