"""Drift statistics on real data: the DP-100 diabetes sample against shifted, resampled and changed copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amlkit.drift import compare_tables, psi
from tests.conftest import REPO

DIABETES = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
EXCLUDE = ["PatientID", "Diabetic"]


@pytest.fixture(scope="module")
def halves():
    frame = pd.read_csv(DIABETES).sample(frac=1.0, random_state=0)
    return frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2:]


def test_two_halves_of_one_sample_do_not_drift(halves):
    reference, current = halves
    report = compare_tables(reference, current, EXCLUDE)
    assert report.drifted == [] and report.drift_share == 0
    assert all(f.psi < 0.02 for f in report.features)
    assert {f.feature: f.kind for f in report.features}["Pregnancies"] == "numeric"


def test_a_shifted_feature_drifts_and_only_it(halves):
    reference, current = halves
    shifted = current.assign(PlasmaGlucose=current["PlasmaGlucose"] + 40)
    report = compare_tables(reference, shifted, EXCLUDE)
    assert report.drifted == ["PlasmaGlucose"] and report.drift_share == pytest.approx(1 / 8)
    glucose = next(f for f in report.features if f.feature == "PlasmaGlucose")
    assert glucose.test == "kolmogorov_smirnov" and glucose.p_value < 1e-10 and glucose.psi > 1
    assert glucose.current_mean - glucose.reference_mean == pytest.approx(40, abs=2)


def test_a_tiny_shift_on_many_rows_is_significant_but_does_not_count(halves):
    reference, current = halves
    nudged = current.assign(BMI=current["BMI"] + 0.6)
    bmi = next(f for f in compare_tables(reference, nudged, EXCLUDE).features if f.feature == "BMI")
    assert bmi.p_value < 0.05 and bmi.psi < 0.1 and not bmi.drifted


def test_categories_are_compared_by_their_counts(halves):
    reference, current = halves
    reference = reference.assign(Clinic=np.where(reference.index % 2 == 0, "north", "south"))
    current = current.assign(Clinic=np.where(current.index % 5 == 0, "north", "south"))
    clinic = next(f for f in compare_tables(reference, current, EXCLUDE).features if f.feature == "Clinic")
    assert clinic.kind == "categorical" and clinic.test == "chi_squared" and clinic.drifted
    assert psi(reference["Clinic"], reference["Clinic"], categorical=True) == pytest.approx(0)


def test_columns_that_do_not_match_are_named(halves):
    reference, current = halves
    with pytest.raises(ValueError, match=r"missing \['BMI'\]; not in the reference \['bmi'\]"):
        compare_tables(reference, current.rename(columns={"BMI": "bmi"}), EXCLUDE)
    with pytest.raises(ValueError, match="No columns are left"):
        compare_tables(reference, current, list(reference.columns))
