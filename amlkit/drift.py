"""Data drift: a current version of a data asset against the reference data a model was trained on.

Each feature gets a statistical test (two-sample Kolmogorov-Smirnov for numbers, chi-squared on the
category counts for categories) and its population stability index (PSI, over the reference's deciles
or categories). A feature drifts when the test rejects *and* the PSI shows a shift that matters: on
thousands of rows the test alone flags shifts too small to matter, on a few rows the PSI alone is noise.
The drift share is the fraction of features that drift.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

#: A numeric column with at most this many distinct values is compared as categories.
MAX_NUMERIC_CATEGORIES = 10
PSI_BINS = 10
#: Keeps the PSI finite when a bin is empty on one side.
PSI_FLOOR = 1e-4


class FeatureDrift(BaseModel):
    feature: str
    kind: Literal["numeric", "categorical"]
    test: Literal["kolmogorov_smirnov", "chi_squared"]
    statistic: float
    p_value: float
    psi: float
    reference_mean: float | None = None
    current_mean: float | None = None
    drifted: bool


class DriftReport(BaseModel):
    reference: str
    current: str
    reference_rows: int
    current_rows: int
    p_value: float = Field(description="A feature's test rejects below this")
    psi_threshold: float = Field(description="A feature's PSI must reach this for it to drift")
    features: list[FeatureDrift]

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def drift_share(self) -> float:
        return len(self.drifted) / len(self.features)


def psi(reference: pd.Series, current: pd.Series, categorical: bool) -> float:
    """Population stability index: sum over bins of (current - reference share) * ln(current / reference share)."""
    if categorical:
        categories = sorted(set(reference.astype(str)) | set(current.astype(str)))
        expected = reference.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0).to_numpy()
        actual = current.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0).to_numpy()
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        expected = np.histogram(reference, edges)[0] / len(reference)
        actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, PSI_FLOOR, None), np.clip(actual, PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_drift(name: str, reference: pd.Series, current: pd.Series, p_value: float, psi_threshold: float) -> FeatureDrift:
    """The test, the PSI and the verdict for one feature (missing values left out)."""
    from scipy import stats

    reference, current = reference.dropna(), current.dropna()
    if reference.empty or current.empty:
        raise ValueError(f"Column '{name}' has no values in the {'reference' if reference.empty else 'current'} data.")
    numeric = pd.api.types.is_numeric_dtype(reference) and pd.api.types.is_numeric_dtype(current)
    categorical = not numeric or reference.nunique() <= MAX_NUMERIC_CATEGORIES
    if categorical:
        categories = sorted(set(reference.astype(str)) | set(current.astype(str)))
        table = np.array([
            reference.astype(str).value_counts().reindex(categories, fill_value=0).to_numpy(),
            current.astype(str).value_counts().reindex(categories, fill_value=0).to_numpy(),
        ])
        table = table[:, table.sum(axis=0) > 0]
        result = stats.chi2_contingency(table) if table.shape[1] > 1 else None
        statistic, p = (float(result.statistic), float(result.pvalue)) if result else (0.0, 1.0)
        test = "chi_squared"
    else:
        result = stats.ks_2samp(reference, current)
        statistic, p, test = float(result.statistic), float(result.pvalue), "kolmogorov_smirnov"
    index = psi(reference, current, categorical)
    means = {"reference_mean": float(reference.mean()), "current_mean": float(current.mean())} if numeric else {}
    return FeatureDrift(
        feature=name, kind="categorical" if categorical else "numeric", test=test, statistic=statistic, p_value=p,
        psi=index, drifted=p < p_value and index >= psi_threshold, **means,
    )


def compare_tables(
    reference: pd.DataFrame, current: pd.DataFrame, exclude: list[str], p_value: float = 0.05, psi_threshold: float = 0.1,
    names: tuple[str, str] = ("reference", "current"),
) -> DriftReport:
    """Every column but ``exclude`` of ``current`` against ``reference``; their columns must match."""
    missing, extra = sorted(set(reference.columns) - set(current.columns)), sorted(set(current.columns) - set(reference.columns))
    if missing or extra:
        raise ValueError(
            "The current data's columns do not match the reference's: "
            + "; ".join(filter(None, [f"missing {missing}" if missing else "", f"not in the reference {extra}" if extra else ""]))
            + ". Monitor a version of the same table the model was trained on."
        )
    features = [c for c in reference.columns if c not in exclude]
    if not features:
        raise ValueError(f"No columns are left to compare once {exclude} are excluded.")
    return DriftReport(
        reference=names[0], current=names[1], reference_rows=len(reference), current_rows=len(current),
        p_value=p_value, psi_threshold=psi_threshold,
        features=[feature_drift(c, reference[c], current[c], p_value, psi_threshold) for c in features],
    )
