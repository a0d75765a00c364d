"""The baseline flow against FLAML called directly, with the same time budget and data, in one run.

    python benchmarks/bench_baseline.py [--budget-minutes 2]

  flaml   FLAML's AutoML on the diabetes sample (PatientID dropped), metric roc_auc, the budget given
  flow    the baseline flow (AutoML job on a fresh localml workspace, the same budget, AUC_weighted)
  cached  the baseline flow again: served from cache

Both are scored on the same held-out 30% (train_test_split, random_state=0), the split the
reference figures in shared/data/dp100/README.md use (HistGradientBoosting: accuracy 0.949, AUC 0.988).
Prints wall seconds, the overhead ratio flow/flaml, and the test accuracy and AUC each reached.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data" / "diabetes"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def run_flaml(budget_seconds: float) -> tuple[float, dict[str, float]]:
    import pandas as pd
    from flaml import AutoML
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    data = pd.read_csv(DATA / "diabetes.csv")
    features, labels = data.drop(columns=["PatientID", "Diabetic"]), data["Diabetic"]
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.3, random_state=0)
    started = time.perf_counter()
    automl = AutoML()
    automl.fit(x_train, y_train, task="classification", metric="roc_auc", time_budget=budget_seconds, seed=0, verbose=0)
    seconds = time.perf_counter() - started
    scores = {
        "accuracy": accuracy_score(y_test, automl.predict(x_test)),
        "AUC": roc_auc_score(y_test, automl.predict_proba(x_test)[:, 1]),
    }
    return seconds, scores


def run_flow(budget_minutes: float, root: Path) -> tuple[float, float, dict[str, float]]:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.baseline import BaselineParameters, baseline

    os.environ["LOCALML_ROOT"] = str(root)
    params = BaselineParameters(data=str(DATA), timeout_minutes=budget_minutes)
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: root / "results"}):
        started = time.perf_counter()
        first = baseline(params)
        middle = time.perf_counter()
        second = baseline(params)
        ended = time.perf_counter()
    assert second.reused, "the second run should have been served from cache"
    scores = {"accuracy": first.metrics["test_accuracy"], "AUC": first.metrics["test_AUC_weighted"]}
    return middle - started, ended - middle, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=2.0)
    budget = parser.parse_args().budget_minutes
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as scratch:
        flaml_seconds, flaml_scores = run_flaml(budget * 60)
        flow_seconds, cached_seconds, flow_scores = run_flow(budget, Path(scratch) / "localml")
    print(f"budget: {budget:g} min")
    print(f"flaml   {flaml_seconds:7.1f} s   test accuracy {flaml_scores['accuracy']:.4f}   test AUC {flaml_scores['AUC']:.4f}")
    print(f"flow    {flow_seconds:7.1f} s   test accuracy {flow_scores['accuracy']:.4f}   test AUC {flow_scores['AUC']:.4f}")
    print(f"cached  {cached_seconds:7.1f} s")
    print(f"flow / flaml (overhead ratio): {flow_seconds / flaml_seconds:.2f}x")
    print(f"cached / flow:                 {cached_seconds / flow_seconds:.3f}x")


if __name__ == "__main__":
    main()
