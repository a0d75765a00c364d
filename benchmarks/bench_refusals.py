"""Bad input at the door: how long `amlflows run` takes to refuse it, next to the cost of starting the command.

    python benchmarks/bench_refusals.py [--rounds 3]

Each case is a command a user could type with one thing wrong. Each round runs every case as its own process
(as a user does), alternating with ``amlflows run train --help``, which loads the same modules and checks
nothing: the floor of any answer the command gives. For each case it checks the refusal (exit code 2, the
expected words, no traceback, no Prefect server started) and prints the median time to refusal and its ratio
to the floor. It also times the check itself, in this process, once the modules are loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (what is wrong, the command's arguments, words the refusal must contain)
CASES = [
    ("experiment name escapes the workspace", ["train", "--experiment-name", "../../../escape-exp"], "starts with '.'"),
    ("model name with a space", ["train", "--model-name", "my model"], "Model name 'my model' is not valid"),
    ("compute name Azure refuses", ["train", "--compute", "bad name!"], "Compute name 'bad name!' is not valid"),
    ("training script missing", ["train", "--script", "missing/train.py"], "Training script 'missing/train.py' not found"),
    ("hyperparameter of the wrong type", ["train", "--hyperparameters", "max_iter=many"], "must be int"),
    ("option the script lacks", ["train", "--hyperparameters", "n_trees=5"], "has no --n_trees argument"),
    ("empty choice in a search space", ["tune", "--search-space", 'learning_rate={"type": "choice", "values": []}'], "has no values"),
    ("malformed JSON thresholds", ["rai_review", "--thresholds", "{bad"], "is not valid JSON"),
    ("model reference without a version", ["rai_review", "--model", "azureml:diabetes-baseline"], "is not a model reference"),
    ("data reference without a prefix", ["monitor", "--data", "diabetes:2"], "is not a data asset reference"),
]
FLOOR = ["train", "--help"]


def run(arguments: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "amlflows.cli", "run", *arguments], cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - started, done


def check_refusal(name: str, done: subprocess.CompletedProcess, words: str) -> None:
    problems = []
    if done.returncode != 2:
        problems.append(f"exit code {done.returncode}, not 2")
    if words not in done.stderr:
        problems.append(f"no '{words}' in what it printed")
    if "Traceback" in done.stderr or "Starting temporary server" in done.stderr + done.stdout:
        problems.append("a traceback or a Prefect server")
    if problems:
        raise SystemExit(f"{name}: {'; '.join(problems)}\n{done.stderr}")


def in_process_seconds(arguments: list[str]) -> float:
    """The check alone: parsing the options and building the flow's parameters, modules already loaded."""
    from amlflows.cli import ParameterError, build_parser, flow_parameters

    started = time.perf_counter()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # argparse prints its refusal, then exits
            options = vars(build_parser().parse_args(["run", *arguments]))
        flow_parameters(arguments[0], {k: v for k, v in options.items() if not k.startswith("_")})
    except (ParameterError, SystemExit):
        return time.perf_counter() - started
    raise SystemExit(f"{arguments} was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    floors, times = [], {name: [] for name, _, _ in CASES}
    for number in range(1, args.rounds + 1):
        for name, arguments, words in CASES:
            floors.append(run(FLOOR)[0])
            seconds, done = run(arguments)
            check_refusal(name, done, words)
            times[name].append(seconds)
        print(f"round {number} done", flush=True)
    floor = statistics.median(floors)
    print(f"\n`amlflows run train --help` (the floor), median of {len(floors)}: {floor:.2f} s\n")
    print(f"| bad input | refused in (median of {args.rounds}) | / floor | the check alone |")
    print("|---|---|---|---|")
    for name, arguments, _ in CASES:
        median = statistics.median(times[name])
        print(f"| {name} | {median:.2f} s | {median / floor:.2f}x | {in_process_seconds(arguments) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
