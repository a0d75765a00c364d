"""The baseline flow against FLAML called directly, with the same time budget and data, in one run.

    python benchmarks/bench_baseline.py [--budget-minutes 2] [--parts demo,dp100]

demo: the demo's AUC_weighted run
  flaml   FLAML's AutoML on the diabetes sample (PatientID dropped), metric roc_auc, the budget given
  flow    the baseline flow (AutoML job on a fresh localml workspace, the same budget, AUC_weighted)
  cached  the baseline flow again: served from cache
Both are scored on the same held-out 30% (train_test_split, random_state=0), the split the
reference figures in shared/data/dp100/README.md use (HistGradientBoosting: accuracy 0.949, AUC 0.988).
Prints wall seconds, the overhead ratio flow/flaml, and the test accuracy and AUC each reached.

dp100: the DP-100 AutoML exercise's search (primary metric accuracy, 5-fold cross-validation on the
whole sample, LogisticRegression blocked), with max_trials=5 (15-minute timeout) and with a 2-minute
budget and max_trials=40, each run three ways on the same data, algorithms and folds' count:
  localml      an AutoML job on a fresh localml workspace (its best trial's cross-validated accuracy)
  flaml        FLAML directly, as it starts when given a budget (its cheapest model first)
  flaml data   FLAML directly with starting_points="data" (its zero-shot, data-dependent defaults)
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


#: The DP-100 exercise's searches: (max_trials, timeout minutes).
DP100_SEARCHES = ((5, 15.0), (40, 2.0))
DP100_BLOCKED = ["LogisticRegression"]
DP100_FOLDS = 5


def dp100_estimators() -> list[str]:
    """FLAML's names of the algorithms the exercise's job searches (every one localml has, less those blocked)."""
    from amlkit.automl.settings import CLASSIFICATION_ALGORITHMS

    return [estimator for name, estimator in CLASSIFICATION_ALGORITHMS.items() if name not in DP100_BLOCKED]


def run_flaml_dp100(max_trials: int, budget_seconds: float, starting_points: str) -> tuple[float, float]:
    """FLAML's best cross-validated accuracy (and wall seconds) on the whole sample, PatientID dropped."""
    import pandas as pd
    from flaml import AutoML

    data = pd.read_csv(DATA / "diabetes.csv")
    started = time.perf_counter()
    automl = AutoML()
    automl.fit(
        data.drop(columns=["PatientID", "Diabetic"]), data["Diabetic"], task="classification", metric="accuracy",
        eval_method="cv", n_splits=DP100_FOLDS, estimator_list=dp100_estimators(), max_iter=max_trials,
        time_budget=budget_seconds, starting_points=starting_points, seed=0, verbose=0,
    )
    return time.perf_counter() - started, 1 - automl.best_loss


def run_localml_dp100(max_trials: int, timeout_minutes: float, root: Path) -> tuple[float, float]:
    """The exercise's AutoML job on localml: its best trial's cross-validated accuracy, and the job's wall seconds."""
    from azure.ai.ml import Input, automl

    from localml import LocalMLClient

    client = LocalMLClient(root)
    job = automl.classification(
        training_data=Input(type="mltable", path=str(DATA)), target_column_name="Diabetic",
        primary_metric="accuracy", n_cross_validations=DP100_FOLDS, experiment_name="dp100-automl",
    )
    job.set_limits(timeout_minutes=timeout_minutes, max_trials=max_trials)
    job.set_training(blocked_training_algorithms=DP100_BLOCKED)
    started = time.perf_counter()
    name = client.jobs.create_or_update(job).name
    while (job := client.jobs.get(name)).status not in ("Completed", "Failed", "Canceled"):
        time.sleep(1)
    seconds = time.perf_counter() - started
    assert job.status == "Completed", f"the AutoML job {name} ended {job.status}: {job.properties.get('localml.error')}"
    return seconds, float(job.properties["best_score"])


def dp100(scratch: Path) -> None:
    print(f"DP-100 AutoML search: accuracy, {DP100_FOLDS}-fold CV, {', '.join(DP100_BLOCKED)} blocked")
    for max_trials, minutes in DP100_SEARCHES:
        runs = {
            "localml": run_localml_dp100(max_trials, minutes, scratch / f"dp100-{max_trials}"),
            "flaml": run_flaml_dp100(max_trials, minutes * 60, "static"),
            "flaml data": run_flaml_dp100(max_trials, minutes * 60, "data"),
        }
        for who, (seconds, accuracy) in runs.items():
            print(f"max_trials={max_trials:<3} {minutes:g} min  {who:11s} {seconds:7.1f} s   CV accuracy {accuracy:.4f}")


def demo(budget: float, scratch: Path) -> None:
    flaml_seconds, flaml_scores = run_flaml(budget * 60)
    flow_seconds, cached_seconds, flow_scores = run_flow(budget, scratch / "localml")
    print(f"budget: {budget:g} min")
    print(f"flaml   {flaml_seconds:7.1f} s   test accuracy {flaml_scores['accuracy']:.4f}   test AUC {flaml_scores['AUC']:.4f}")
    print(f"flow    {flow_seconds:7.1f} s   test accuracy {flow_scores['accuracy']:.4f}   test AUC {flow_scores['AUC']:.4f}")
    print(f"cached  {cached_seconds:7.1f} s")
    print(f"flow / flaml (overhead ratio): {flow_seconds / flaml_seconds:.2f}x")
    print(f"cached / flow:                 {cached_seconds / flow_seconds:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=2.0, help="the demo's budget")
    parser.add_argument("--parts", default="demo,dp100", help="which comparisons to run, comma-separated")
    args = parser.parse_args()
    parts = args.parts.split(",")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as scratch:
        if "dp100" in parts:
            dp100(Path(scratch))
        if "demo" in parts:
            demo(args.budget_minutes, Path(scratch))


if __name__ == "__main__":
    main()
