"""A training script that takes its time: for tests that interrupt a flow while its job runs."""

import argparse
import time

import mlflow
import mlflow.sklearn
import pandas as pd
from sklearn.linear_model import LogisticRegression

parser = argparse.ArgumentParser()
parser.add_argument("--training_data", type=str, required=True)
parser.add_argument("--sleep_seconds", type=float, default=10.0)
parser.add_argument("--fail", type=int, default=0)
args = parser.parse_args()

print("starting", flush=True)
time.sleep(args.sleep_seconds)
if args.fail:
    raise ValueError("the training data has no usable rows")
data = pd.read_csv(args.training_data).head(500)
features = data.drop(columns=["PatientID", "Diabetic"])
model = LogisticRegression(max_iter=200).fit(features, data["Diabetic"])
mlflow.log_metric("accuracy", float(model.score(features, data["Diabetic"])))
mlflow.sklearn.save_model(model, "outputs/model", serialization_format="cloudpickle")
print("done", flush=True)
