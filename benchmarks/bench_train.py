"""Orchestration overhead of the train flow, measured side by side in one run.

    python benchmarks/bench_train.py [--rounds 3]

Each round, in alternation (so machine noise hits all three alike):
  direct  the training script run with plain python (MLflow logging to a SQLite store)
  flow    the train flow on a fresh localml workspace (data, compute, job, wait, model)
  cached  the same flow again: served from cache, nothing trains

Prints the median seconds of each and the ratios flow/direct and cached/flow.
The Prefect server (Prefect's test harness) is started once, before the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "train_diabetes" / "train.py"
DATA = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def time_direct(workdir: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(SCRIPT), "--training_data", str(DATA), "--model_dir", str(workdir / "model")],
        check=True, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def time_flow(root: Path) -> tuple[float, float]:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.train import TrainParameters, train

    os.environ["LOCALML_ROOT"] = str(root)
    params = TrainParameters(script=str(SCRIPT), data=str(DATA))
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: root / "results"}):
        started = time.perf_counter()
        first = train(params)
        middle = time.perf_counter()
        second = train(params)
        ended = time.perf_counter()
    assert not first.reused and second.reused, "the second run should have been served from cache"
    return middle - started, ended - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    from prefect.testing.utilities import prefect_test_harness

    times: dict[str, list[float]] = {"direct": [], "flow": [], "cached": []}
    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as scratch:
        for round_number in range(rounds):
            workdir = Path(scratch) / f"round-{round_number}"
            (workdir / "direct").mkdir(parents=True)
            times["direct"].append(time_direct(workdir / "direct"))
            flow_seconds, cached_seconds = time_flow(workdir / "localml")
            times["flow"].append(flow_seconds)
            times["cached"].append(cached_seconds)
            print(f"round {round_number + 1}: " + "  ".join(f"{k}={v[-1]:.2f}s" for k, v in times.items()), flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedian of {rounds} rounds: " + "  ".join(f"{k}={v:.2f}s" for k, v in median.items()))
    print(f"flow / direct  (orchestration overhead ratio): {median['flow'] / median['direct']:.2f}x")
    print(f"cached / flow  (cached re-run vs first run):   {median['cached'] / median['flow']:.2f}x")


if __name__ == "__main__":
    main()
