"""Train a diabetes classifier, as in the DP-100 exercises, tracked with MLflow.

Runs anywhere: as a command job on Azure ML or localml (which set the MLflow run
through MLFLOW_RUN_ID), or by hand with plain ``python train.py --training_data ...``.
The model is saved under ./outputs/model, which a job stores as a run artifact.
"""

import argparse
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--training_data", type=str, required=True, help="a CSV file, or a folder of CSV files")
    parser.add_argument("--target", type=str, default="Diabetic")
    parser.add_argument("--drop_columns", type=str, default="PatientID", help="comma-separated ID columns to leave out")
    parser.add_argument("--learning_rate", type=float, default=0.1)
    parser.add_argument("--max_iter", type=int, default=100)
    parser.add_argument("--max_leaf_nodes", type=int, default=31)
    parser.add_argument("--log_every", type=int, default=25, help="log AUC every this many boosting iterations (0: only at the end)")
    parser.add_argument("--test_size", type=float, default=0.3)
    parser.add_argument("--random_state", type=int, default=0)
    parser.add_argument("--model_dir", type=str, default="outputs/model")
    return parser.parse_args(argv)


def read_table(path: str) -> pd.DataFrame:
    source = Path(path)
    files = sorted(source.glob("*.csv")) if source.is_dir() else [source]
    if not files:
        raise FileNotFoundError(f"No CSV files in {source}")
    return pd.concat((pd.read_csv(f) for f in files), ignore_index=True)


def main(argv=None):
    args = parse_args(argv)
    data = read_table(args.training_data)
    print(f"Read {len(data)} rows, {data.shape[1]} columns from {args.training_data}")
    drop = [c for c in args.drop_columns.split(",") if c and c in data.columns]
    features = data.drop(columns=drop + [args.target])
    labels = data[args.target]
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=args.test_size, random_state=args.random_state
    )

    with mlflow.start_run():
        mlflow.log_params(
            {k: getattr(args, k) for k in ("learning_rate", "max_iter", "max_leaf_nodes", "test_size", "random_state")}
        )
        model = HistGradientBoostingClassifier(
            learning_rate=args.learning_rate,
            max_leaf_nodes=args.max_leaf_nodes,
            random_state=args.random_state,
            early_stopping=False,
            warm_start=True,
        )
        # boosting in stages, AUC logged after each: a sweep's early termination policy judges a trial by them
        stages = range(args.log_every, args.max_iter, args.log_every) if args.log_every > 0 else ()
        for step, iterations in enumerate([*stages, args.max_iter]):
            model.set_params(max_iter=iterations).fit(x_train, y_train)
            if iterations < args.max_iter:
                mlflow.log_metric("AUC", roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]), step=step)
        predictions = model.predict(x_test)
        metrics = {
            "accuracy": accuracy_score(y_test, predictions),
            "AUC": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
        }
        mlflow.log_metrics(metrics, step=step)
        print("  ".join(f"{name}={value:.4f}" for name, value in metrics.items()))
        mlflow.sklearn.save_model(
            model,
            args.model_dir,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            signature=infer_signature(x_test, predictions),
        )
        print(f"Saved the model to {args.model_dir}")


if __name__ == "__main__":
    main()
