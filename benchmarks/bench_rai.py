"""What a Responsible AI review costs on localml, by insight: the full review against the quick gate.

    python benchmarks/bench_rai.py [--rounds 2] [--rows 1000]

Each round, on a fresh workspace, a LightGBM model of the DP-100 RAI split is reviewed twice with the
pipeline the rai_review flow submits (Azure's components from the ``azureml`` registry):
  full   constructor, explanation, error analysis, counterfactuals, causal (BMI) side by side, gather
  gate   constructor, error analysis, gather: only what the scorecard needs
Prints the median seconds of each pipeline and of each node, and the ratio full/gate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO / "examples" / "data" / "diabetes-rai"
TARGET = "Diabetic"


def setup(root: Path):
    import mlflow.sklearn
    import pandas as pd
    from azure.ai.ml.entities import Data, Model
    from lightgbm import LGBMClassifier
    from mlflow.models import infer_signature

    from localml import LocalMLClient

    client = LocalMLClient(root / "ws")
    train = pd.read_csv(DATA / "train" / "diabetes.csv")
    X = train.drop(columns=TARGET)
    model = LGBMClassifier(n_estimators=100, verbose=-1).fit(X, train[TARGET])
    mlflow.sklearn.save_model(
        model, str(root / "model"), serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        signature=infer_signature(X.head(), model.predict(X.head())),
    )
    registered = client.models.create_or_update(Model(name="bench-rai", path=str(root / "model"), type="mlflow_model"))
    data = {split: client.data.create_or_update(Data(name=f"bench-rai-{split}", path=str(DATA / split), type="mltable")) for split in ("train", "test")}
    return client, f"azureml:{registered.name}:{registered.version}", data


def review(client, model: str, data, insights: list[str], rows: int) -> tuple[float, dict[str, float]]:
    from tasks.jobs import InputSpec
    from tasks.rai import RAIReviewSpec

    spec = RAIReviewSpec(
        model=model, target_column=TARGET, insights=insights, treatment_features=["BMI"], max_test_rows=rows,
        cohort_features={"Age": [0, 30, 50, 120]}, total_counterfactuals=5,
        **{f"{split}_data": InputSpec(type="mltable", path=f"azureml:{d.name}:{d.version}") for split, d in data.items()},
    )
    started = time.perf_counter()
    job = client.jobs.create_or_update(spec.to_job())
    while (status := client.jobs.get(job.name).status) not in ("Completed", "Failed", "Canceled"):
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if status != "Completed":
        raise SystemExit(f"review {job.name} ended {status}: {client.jobs.get(job.name).properties.get('localml.error')}")
    nodes = {}
    for node in client.jobs.list(parent_job_name=job.name):
        record = client._workspace.catalog.get_job(node.name)
        nodes[node.display_name] = record["ended_at"] - record["started_at"]
    return seconds, nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1000, help="test rows reviewed")
    args = parser.parse_args()
    totals, nodes = defaultdict(list), defaultdict(list)
    for round_number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="bench-rai-") as folder:
            client, model, data = setup(Path(folder))
            for label, insights in (("full", ["explanation", "error_analysis", "counterfactual", "causal"]), ("gate", ["error_analysis"])):
                seconds, by_node = review(client, model, data, insights, args.rows)
                totals[label].append(seconds)
                for node, node_seconds in by_node.items():
                    nodes[f"{label}/{node}"].append(node_seconds)
                print(f"round {round_number} {label}: {seconds:.1f} s", flush=True)
    full, gate = statistics.median(totals["full"]), statistics.median(totals["gate"])
    print(f"\nmedian of {args.rounds} rounds, {args.rows} test rows")
    print(f"  full review  {full:6.1f} s")
    print(f"  quick gate   {gate:6.1f} s")
    print(f"  full / gate  {full / gate:6.2f}x")
    for node, values in sorted(nodes.items()):
        print(f"    {node:28s} {statistics.median(values):6.1f} s")


if __name__ == "__main__":
    main()
