"""What a Responsible AI review looks at: a model, its train and test rows, the target and the task.

Everything a review can get wrong is checked here, before any insight is computed (they are the slow
part): a target missing from the data, a model whose inputs do not match the data's columns, a model
that cannot give class probabilities, cohort or treatment features that are not columns.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from amlkit.errors import SpecError

TASKS = ("classification", "regression")
METADATA_FILE = "review.json"


@dataclass
class Review:
    model: Any
    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    task: str
    categorical: list[str] = field(default_factory=list)
    model_path: str | None = None

    @property
    def features(self) -> list[str]:
        return [c for c in self.test.columns if c != self.target]

    @property
    def X_test(self) -> pd.DataFrame:
        return self.test[self.features]

    @property
    def y_test(self) -> pd.Series:
        return self.test[self.target]

    @property
    def classes(self) -> list | None:
        return sorted(pd.concat([self.train[self.target], self.test[self.target]]).unique().tolist()) if self.task == "classification" else None

    def check_features(self, names: list[str], what: str) -> None:
        """Raise, naming ``what`` they are for, unless every name is a feature column."""
        unknown = [n for n in names if n not in self.features]
        if unknown:
            raise SpecError(
                f"{what} {unknown} {'is' if len(unknown) == 1 else 'are'} not a feature of the data; "
                f"the features are: {', '.join(self.features)}."
            )

    def save(self, folder: Path) -> None:
        """The constructor's output: the model, the rows and what they mean, for the insight steps."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.model_path:
            shutil.copytree(self.model_path, folder / "model", dirs_exist_ok=True)
        self.train.to_parquet(folder / "train.parquet")
        self.test.to_parquet(folder / "test.parquet")
        (folder / METADATA_FILE).write_text(json.dumps(
            {"target": self.target, "task": self.task, "categorical": self.categorical}, indent=2
        ))

    @classmethod
    def load(cls, folder: Path) -> "Review":
        metadata = json.loads((folder / METADATA_FILE).read_text())
        return cls(
            model=load_model(folder / "model"),
            train=pd.read_parquet(folder / "train.parquet"),
            test=pd.read_parquet(folder / "test.parquet"),
            model_path=str(folder / "model"),
            **metadata,
        )


def load_model(path: Path) -> Any:
    """An MLflow model as an object with ``predict`` (and ``predict_proba`` when it is a scikit-learn classifier)."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import Model

    flavors = Model.load(str(path)).flavors
    return mlflow.sklearn.load_model(str(path)) if "sklearn" in flavors else mlflow.pyfunc.load_model(str(path))


def build_review(
    model_path: str | Path,
    train: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    task: str,
    categorical: list[str] | None = None,
    max_test_rows: int = 5000,
) -> Review:
    """Check the inputs of a review and load its model; every mistake is reported before any insight runs."""
    _check_frames(train, test, target, task)
    _check_signature(Path(model_path), [c for c in test.columns if c != target])
    model = load_model(Path(model_path))
    if task == "classification" and not hasattr(model, "predict_proba"):
        raise SpecError(
            "A classification review needs class probabilities, and this model has no predict_proba "
            "(save it with mlflow.sklearn so its scikit-learn flavor is kept)."
        )
    review = Review(
        model=model,
        train=train,
        test=test.sample(max_test_rows, random_state=0) if len(test) > max_test_rows else test,
        target=target,
        task=task,
        categorical=list(categorical or []),
        model_path=str(model_path),
    )
    review.check_features(review.categorical, "Categorical column")
    return review


def _check_frames(train: pd.DataFrame, test: pd.DataFrame, target: str, task: str) -> None:
    if task not in TASKS:
        raise SpecError(f"task_type '{task}' is not supported; use one of: {', '.join(TASKS)}.")
    for name, frame in (("training", train), ("test", test)):
        if target not in frame.columns:
            raise SpecError(
                f"Target column '{target}' is missing from the {name} data; its columns are: {', '.join(map(str, frame.columns))}."
            )
        if frame.empty:
            raise SpecError(f"The {name} data has no rows.")
    if sorted(train.columns) != sorted(test.columns):
        raise SpecError(
            f"The training and test data have different columns: {sorted(train.columns)} against {sorted(test.columns)}."
        )


def _check_signature(model_path: Path, features: list[str]) -> None:
    """The model's signature names the data's features, no more and no fewer (a model without one is taken as is)."""
    expected = model_inputs(model_path)
    if expected is None or sorted(expected) == sorted(features):
        return
    missing, extra = sorted(set(expected) - set(features)), sorted(set(features) - set(expected))
    raise SpecError(
        f"The model's signature does not match the data: the model takes {expected}; "
        + (f"the data lacks {missing}" if missing else "")
        + ("; " if missing and extra else "")
        + (f"the data has columns the model does not take: {extra} (drop them)" if extra else "")
        + ". Review the model with the data it was trained on."
    )


def model_metrics(review: Review) -> dict[str, float]:
    """Azure's metrics of the model on the review's test rows (AutoML's names: AUC_weighted, accuracy, ...)."""
    from amlkit.metrics import classification_metrics, regression_metrics

    if review.task == "classification":
        indices = review.y_test.map({c: i for i, c in enumerate(review.classes)}).to_numpy()
        return classification_metrics(indices, review.model.predict_proba(review.X_test), len(review.classes))
    truth = review.y_test
    return regression_metrics(truth, review.model.predict(review.X_test), float(truth.max() - truth.min()))


def model_inputs(path: Path) -> list[str] | None:
    """The column names of the model's input signature; None when it was saved without one."""
    from mlflow.models import Model

    if not (path / "MLmodel").is_file():
        raise SpecError(f"'{path}' is not an MLflow model folder (it has no MLmodel file).")
    signature = Model.load(str(path)).signature
    return None if signature is None else signature.inputs.input_names()
