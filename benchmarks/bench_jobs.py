"""The fixed cost of a localml job: a trivial command job against its script run directly, in one run.

    python benchmarks/bench_jobs.py [--rounds 7] [--sweep-rounds 2]

On one fresh localml workspace (a warm-up job first creates its MLflow tables and experiment), each
round, in alternation (so machine noise hits both alike):
  direct  ``python hello.py`` (one print) run with plain python
  job     the same script as a command job: ``ml_client.jobs.create_or_update(command(...))``, then
          ``ml_client.jobs.stream`` until it ends (the way a caller waits, as amlflows' wait_for_job does)
Prints the medians, their difference (the job's fixed cost) and their ratio.

Then ``--sweep-rounds`` sweep jobs of 6 trials (random sampling, 2 at a time, no compute cap) over a
script that logs the primary metric with MLflow and, last, its own running time (from its process's
start). A trial's overhead is its wall time (its MLflow run's start, at submission, to its end) minus
the script's own time. Prints the median and the largest overhead per trial, and each sweep's wall time.

Last, ``--rounds`` new workspaces, in alternation: MLflow's database made by MLflow itself (its chain of
schema migrations, what every new workspace paid before) against localml's copy of MLflow's empty one,
both in this process with MLflow already imported.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENVIRONMENT = "AzureML-sklearn-1.5@latest"
HELLO = 'print("hello")\n'
TRIAL = '''\
import argparse, os, time
import psutil
started = psutil.Process(os.getpid()).create_time()
import mlflow
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
x = parser.parse_args().x
mlflow.log_metric("score", -(x - 0.3) ** 2)
mlflow.log_metric("script_seconds", time.time() - started)
'''
TRIALS = 6
CONCURRENT = 2


def time_direct(code: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "hello.py"], cwd=code, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_job(ml_client, code: Path) -> float:
    from azure.ai.ml import command

    started = time.perf_counter()
    job = ml_client.jobs.create_or_update(command(code=str(code), command="python hello.py", environment=ENVIRONMENT))
    with contextlib.redirect_stdout(io.StringIO()):
        ml_client.jobs.stream(job.name)
    seconds = time.perf_counter() - started
    assert ml_client.jobs.get(job.name).status == "Completed"
    return seconds


def run_sweep(ml_client, code: Path) -> tuple[float, list[float]]:
    """The sweep's wall seconds and each trial's overhead."""
    from azure.ai.ml import command
    from azure.ai.ml.sweep import Uniform
    from mlflow.tracking import MlflowClient

    trial = command(
        code=str(code), command="python trial.py --x ${{inputs.x}}", inputs={"x": 0.5}, environment=ENVIRONMENT
    )
    sweep = trial(x=Uniform(0.0, 1.0)).sweep(sampling_algorithm="random", primary_metric="score", goal="Maximize")
    sweep.set_limits(max_total_trials=TRIALS, max_concurrent_trials=CONCURRENT)
    started = time.perf_counter()
    job = ml_client.jobs.create_or_update(sweep)
    with contextlib.redirect_stdout(io.StringIO()):
        ml_client.jobs.stream(job.name)
    wall = time.perf_counter() - started
    mlflow = MlflowClient(ml_client.workspaces.get(ml_client.workspace_name).mlflow_tracking_uri)
    overheads = []
    for child in ml_client.jobs.list(parent_job_name=job.name):
        assert child.status == "Completed", f"{child.name} ended {child.status}"
        run = mlflow.get_run(child.name)
        overheads.append((run.info.end_time - run.info.start_time) / 1000 - run.data.metrics["script_seconds"])
    assert len(overheads) == TRIALS
    return wall, overheads


def time_new_store(scratch: Path, copied: bool) -> float:
    from localml.tracking import Tracking, _make_empty_store

    folder = Path(tempfile.mkdtemp(dir=scratch))
    started = time.perf_counter()
    if copied:
        Tracking(folder)
    else:
        _make_empty_store(folder / "mlflow.db")
    return time.perf_counter() - started


def compare_new_stores(scratch: Path, rounds: int) -> None:
    import mlflow  # noqa: F401  (both sides in a process that has it loaded, as the flows' process has)

    from localml.tracking import empty_store

    empty_store()
    times: dict[str, list[float]] = {"mlflow": [], "copy": []}
    for _ in range(rounds):
        times["mlflow"].append(time_new_store(scratch, copied=False))
        times["copy"].append(time_new_store(scratch, copied=True))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"new workspace's MLflow database, median of {rounds}: made by MLflow={median['mlflow']:.3f}s  "
        f"copied={median['copy']:.3f}s  ratio={median['mlflow'] / median['copy']:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sweep-rounds", type=int, default=2)
    args = parser.parse_args()
    from localml import LocalMLClient

    with tempfile.TemporaryDirectory() as scratch:
        code = Path(scratch) / "code"
        code.mkdir()
        (code / "hello.py").write_text(HELLO)
        (code / "trial.py").write_text(TRIAL)
        ml_client = LocalMLClient(Path(scratch) / "localml")
        time_job(ml_client, code)  # the workspace's MLflow tables and experiment, created once
        time_direct(code)
        times: dict[str, list[float]] = {"direct": [], "job": []}
        for round_number in range(args.rounds):
            times["direct"].append(time_direct(code))
            times["job"].append(time_job(ml_client, code))
            print(f"round {round_number + 1}: " + "  ".join(f"{k}={v[-1]:.3f}s" for k, v in times.items()), flush=True)
        median = {name: statistics.median(values) for name, values in times.items()}
        fixed = statistics.median(j - d for j, d in zip(times["job"], times["direct"]))
        print(f"\nmedian of {args.rounds} rounds: direct={median['direct']:.3f}s  job={median['job']:.3f}s")
        print(f"job fixed cost (job - direct, median of the rounds' differences): {fixed:.3f}s")
        print(f"job / direct: {median['job'] / median['direct']:.2f}x")

        overheads: list[float] = []
        for round_number in range(args.sweep_rounds):
            wall, trial_overheads = run_sweep(ml_client, code)
            overheads += trial_overheads
            print(f"sweep {round_number + 1}: wall={wall:.2f}s  trial overheads=" + " ".join(f"{o:.2f}" for o in trial_overheads), flush=True)
        if overheads:
            print(
                f"sweep trial overhead (trial wall - script time), {len(overheads)} trials: "
                f"median={statistics.median(overheads):.3f}s  max={max(overheads):.3f}s"
            )
        compare_new_stores(Path(scratch), args.rounds)


if __name__ == "__main__":
    main()
