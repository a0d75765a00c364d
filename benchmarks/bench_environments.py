"""What a custom environment costs on localml: the first job builds its venv, later jobs reuse it.

    python benchmarks/bench_environments.py [--rounds 3] [--spec small|generated]

Each round, on a fresh workspace, three jobs run one after the other (after an untimed first job that
sets the workspace up), the same command each:
  curated  the job in a curated environment (the current interpreter): the baseline
  build    the first job in a conda environment: the venv is built (pip installs the spec)
  reuse    a second job in another environment with the same spec: the venv is reused

``small`` is a one-package spec (six); ``generated`` is the conda spec AutoML writes next to a
generated training script (numpy, pandas, scikit-learn, mlflow, lightgbm, mltable): the refine
flow's case. pip's own download cache is warm after the first round, as on a user's machine.
Prints the median seconds of each and the ratios build/curated and reuse/curated.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PYTHON = ".".join(platform.python_version_tuple()[:2])
COMMAND = 'python -c "import sys; print(sys.prefix)"'


def spec(kind: str) -> str:
    if kind == "small":
        return f"dependencies:\n  - python={PYTHON}\n  - pip\n  - pip:\n      - six==1.16.0\n"
    from lightgbm import LGBMClassifier

    from localml.automl.codegen import environment_spec

    return environment_spec(LGBMClassifier(), "bench-env")


def run_job(client, environment: str) -> float:
    from azure.ai.ml import command

    started = time.perf_counter()
    job = client.jobs.create_or_update(command(command=COMMAND, environment=environment, experiment_name="bench"))
    while (status := client.jobs.get(job.name).status) not in ("Completed", "Failed", "Canceled"):
        time.sleep(0.1)
    if status != "Completed":
        raise SystemExit(f"job {job.name} ended {status}: {client.jobs.get(job.name).properties.get('localml.error')}")
    return time.perf_counter() - started


def one_round(kind: str) -> dict[str, float]:
    from azure.ai.ml.entities import Environment

    from localml import LocalMLClient

    with tempfile.TemporaryDirectory(prefix="bench-env-") as folder:
        client = LocalMLClient(Path(folder) / "ws")
        conda = Path(folder) / "conda.yml"
        conda.write_text(spec(kind))
        for name in ("first", "second"):
            client.environments.create_or_update(Environment(name=name, conda_file=str(conda)))
        run_job(client, "AzureML-sklearn-1.5@latest")  # a new workspace's first job also creates its MLflow store
        return {
            "curated": run_job(client, "AzureML-sklearn-1.5@latest"),
            "build": run_job(client, "azureml:first:1"),
            "reuse": run_job(client, "azureml:second:1"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spec", choices=("small", "generated"), default="small")
    args = parser.parse_args()
    rounds = []
    for number in range(1, args.rounds + 1):
        rounds.append(one_round(args.spec))
        print(f"round {number}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items()), flush=True)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"\nspec {args.spec}, median of {args.rounds} rounds: " + ", ".join(f"{k} {v:.2f} s" for k, v in median.items()))
    print(f"build / curated: {median['build'] / median['curated']:.2f}x")
    print(f"reuse / curated: {median['reuse'] / median['curated']:.2f}x")


if __name__ == "__main__":
    main()
