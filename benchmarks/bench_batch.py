"""Batch endpoint speed: a localml batch endpoint's whole job against one Python process scoring the same files.

    python benchmarks/bench_batch.py [--files 40] [--rows 2500] [--rounds 3]

The data: ``--files`` CSV files of ``--rows`` patients each, drawn (with replacement, seeded) from the diabetes
sample's feature columns. The model: the diabetes classifier ``examples/train_diabetes/train.py`` trains (the one
the ``train`` flow registers), saved as an MLflow model.

The two, run alternately ``--rounds`` times in one run so they share the machine's state:
- the endpoint: a ``BatchEndpoint`` with a ``ModelBatchDeployment`` (2 instances x 2 per instance, 2 files a
  mini-batch, append_row) on a compute of 2 instances, made once beforehand; timed from ``invoke`` to the job
  Completed (its own process, workers that each load the model once, the mini-batches, the assembled output);
- the single process: a fresh ``python`` that loads the same model with ``mlflow.pyfunc``, predicts every file in
  turn and writes one predictions file (its start-up and imports counted, as the job's are).

Both outputs must hold every row. The goal is the endpoint within 1.0x of the single process: its parallelism
pays for its start-up.
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

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: localml is the repository's own package

DIABETES_CSV = REPO / "examples" / "data" / "diabetes" / "diabetes.csv"
TRAIN_SCRIPT = REPO / "examples" / "train_diabetes" / "train.py"
JOB_TIMEOUT = 600.0

SINGLE_PROCESS = """
import sys
from pathlib import Path
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frames = []
for path in sorted(Path(sys.argv[2]).glob("*.csv")):
    rows = pd.read_csv(path)
    frames.append(pd.DataFrame({"prediction": model.predict(rows), "file": path.name}))
pd.concat(frames).to_csv(sys.argv[3], index=False)
"""


def write_files(folder: Path, files: int, rows: int) -> None:
    features = pd.read_csv(DIABETES_CSV).drop(columns=["PatientID", "Diabetic"])
    folder.mkdir(parents=True)
    for number in range(files):
        features.sample(rows, replace=True, random_state=number).to_csv(folder / f"patients-{number:03d}.csv", index=False)


def train_model(scratch: Path) -> Path:
    model = scratch / "model"
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}"}
    subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--training_data", str(DIABETES_CSV), "--model_dir", str(model)],
                   cwd=scratch, env=environment, check=True, stdout=subprocess.DEVNULL)
    return model


def make_endpoint(ml_client, model_dir: Path) -> str:
    from azure.ai.ml.constants import BatchDeploymentOutputAction
    from azure.ai.ml.entities import AmlCompute, BatchEndpoint, BatchRetrySettings, Model, ModelBatchDeployment

    ml_client.compute.begin_create_or_update(AmlCompute(name="aml-cluster", max_instances=2)).result()
    model = ml_client.models.create_or_update(Model(name="diabetes-bench", path=str(model_dir), type="mlflow_model"))
    endpoint = BatchEndpoint(name="diabetes-bench", description="bench_batch.py")
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    deployment = ModelBatchDeployment(
        name="classifier", endpoint_name=endpoint.name, model=model, compute="aml-cluster",
        instance_count=2, max_concurrency_per_instance=2, mini_batch_size=2,
        output_action=BatchDeploymentOutputAction.APPEND_ROW, output_file_name="predictions.csv",
        retry_settings=BatchRetrySettings(max_retries=3, timeout=300), logging_level="info",
    )
    ml_client.batch_deployments.begin_create_or_update(deployment).result()
    endpoint.defaults = {"deployment_name": deployment.name}
    ml_client.batch_endpoints.begin_create_or_update(endpoint).result()
    return endpoint.name


def time_endpoint(ml_client, endpoint: str, data: Path, scratch: Path) -> float:
    from azure.ai.ml import Input

    started = time.perf_counter()
    job = ml_client.batch_endpoints.invoke(endpoint_name=endpoint, input=Input(type="uri_folder", path=str(data)))
    while (status := ml_client.jobs.get(job.name).status) not in ("Completed", "Failed", "Canceled"):
        if time.perf_counter() - started > JOB_TIMEOUT:
            raise SystemExit(f"job {job.name} still {status} after {JOB_TIMEOUT:g} s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if status != "Completed":
        raise SystemExit(f"job {job.name} ended {status}: {ml_client.jobs.get(job.name).properties.get('localml.error')}")
    download = scratch / job.name
    ml_client.jobs.download(name=job.name, download_path=str(download), output_name="score")
    return elapsed, count_rows(download / "named-outputs" / "score" / "predictions.csv", header=False)


def time_single_process(model_dir: Path, data: Path, scratch: Path, round_number: int) -> float:
    output = scratch / f"single-{round_number}.csv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", SINGLE_PROCESS, str(model_dir), str(data), str(output)], check=True)
    return time.perf_counter() - started, count_rows(output, header=True)


def count_rows(path: Path, header: bool) -> int:
    with open(path, "rb") as lines:
        return sum(1 for _ in lines) - (1 if header else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from localml import LocalMLClient

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as folder:
        scratch = Path(folder)
        data = scratch / "patients"
        write_files(data, args.files, args.rows)
        model_dir = train_model(scratch)
        ml_client = LocalMLClient(scratch / "workspace")
        endpoint = make_endpoint(ml_client, model_dir)
        expected = args.files * args.rows
        endpoint_times, single_times = [], []
        for round_number in range(args.rounds):
            seconds, rows = time_endpoint(ml_client, endpoint, data, scratch)
            endpoint_times.append(seconds)
            assert rows == expected, f"the endpoint's output has {rows} rows, not {expected}"
            seconds, rows = time_single_process(model_dir, data, scratch, round_number)
            single_times.append(seconds)
            assert rows == expected, f"the single process wrote {rows} rows, not {expected}"
            print(f"round {round_number + 1}: endpoint {endpoint_times[-1]:.2f} s, single process {single_times[-1]:.2f} s", flush=True)
        ml_client.batch_endpoints.begin_delete(endpoint).result()
    endpoint_median, single_median = statistics.median(endpoint_times), statistics.median(single_times)
    print(f"\n{args.files} files x {args.rows} rows ({expected} rows), median of {args.rounds} rounds")
    print("| target | whole job (s) | ratio to the single process |")
    print("|---|---|---|")
    print(f"| single process (load once, predict each file) | {single_median:.2f} | 1.00x |")
    print(f"| localml batch endpoint (2 instances x 2) | {endpoint_median:.2f} | {endpoint_median / single_median:.2f}x |")


if __name__ == "__main__":
    main()
