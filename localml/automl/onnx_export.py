"""The best AutoML model as ONNX, beside its MLflow model, where Azure's best run keeps it (``outputs/model.onnx``).

Made with the maintained converters: skl2onnx for the featurization and scikit-learn's estimators, onnxmltools
for LightGBM and XGBoost. The graph takes one ``[N, 1]`` input per feature column (float for numbers, string
for categories, ``""`` for a missing category) and answers ``label`` and ``probabilities`` for classification,
``variable`` for regression.

ONNX runtimes compute in float32. The featurization of an ONNX-compatible search therefore does not scale
numbers: a tree compares a feature with a threshold, and a scaled value rounded to float32 can land on the other
side of one, so the two models would disagree on a few rows. Unscaled, both see the same float32 value.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

ONNX_FILE = "model.onnx"
#: the ONNX opsets the graph uses: what onnxruntime 1.17 and newer run, and Azure's ONNX runtime too
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


class OnnxConversionError(Exception):
    """The model could not be expressed in ONNX; the message says which part and why."""


def convert(model, sample: pd.DataFrame):
    """``model`` (an ``AutoMLModel``: featurizer + estimator) as an ONNX ``ModelProto``; ``sample`` gives the columns' types."""
    from skl2onnx import convert_sklearn
    from sklearn.pipeline import Pipeline

    _register_boosting_converters()
    featurizer = _with_text_missing_values(model.featurizer)
    estimator = model.estimator
    pipeline = Pipeline([("featurize", featurizer), ("model", estimator)])
    options = {id(estimator): {"zipmap": False}} if model.classes is not None else None
    try:
        graph = convert_sklearn(
            pipeline, initial_types=input_types(sample, categorical_columns(featurizer)), target_opset=TARGET_OPSET, options=options
        )
    except Exception as error:  # the converters raise many kinds; each names the part it could not convert
        raise OnnxConversionError(f"{type(estimator).__name__}: {type(error).__name__}: {error}") from error
    if model.classes is not None:
        _answer_labels(graph, model.classes)
    return graph


def predict(path, frame: pd.DataFrame) -> np.ndarray:
    """What the ONNX model at ``path`` predicts for ``frame`` (labels, or values for regression)."""
    session = _session(path)
    return session.run(None, input_feed(session, frame))[0].ravel()


def predict_proba(path, frame: pd.DataFrame) -> np.ndarray:
    session = _session(path)
    return session.run(["probabilities"], input_feed(session, frame))[0]


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def input_feed(session, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The rows of ``frame`` as the graph's inputs: one column each, in the input's own type."""
    feed = {}
    for graph_input in session.get_inputs():
        column = frame[[graph_input.name]]
        if graph_input.type == "tensor(string)":
            feed[graph_input.name] = column.astype(object).where(column.notna(), "").astype(str).to_numpy()
        elif graph_input.type == "tensor(int64)":
            feed[graph_input.name] = column.to_numpy(np.int64)
        else:
            feed[graph_input.name] = column.to_numpy(np.float32)
    return feed


def input_types(sample: pd.DataFrame, categorical: list[str]) -> list:
    """One ``[N, 1]`` input per column: text categories as strings, numbered ones as int64, numbers as float."""
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    types = []
    for column in sample.columns:
        values = sample[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            types.append((column, StringTensorType([None, 1])))
        elif column in categorical:
            types.append((column, Int64TensorType([None, 1])))
        else:
            types.append((column, FloatTensorType([None, 1])))
    return types


def categorical_columns(featurizer) -> list[str]:
    return [column for name, _, columns in featurizer.transformers_ if name == "categorical" for column in columns]


def _with_text_missing_values(featurizer):
    """A copy whose categorical imputers look for ``""``: ONNX strings have no NaN (skl2onnx refuses a float one)."""
    featurizer = copy.deepcopy(featurizer)
    for name, part, _ in featurizer.transformers_:
        if name == "categorical":
            part.named_steps["impute"].missing_values = ""
    return featurizer


def _answer_labels(graph, classes) -> None:
    """Make the graph answer the original labels: the search trained on class indices (``AutoMLModel`` maps them
    back), and not every estimator lets its classes be renamed, so a LabelEncoder maps the index it answers."""
    from onnx import TensorProto, helper

    labels = np.asarray(classes)
    if labels.tolist() == list(range(len(labels))):
        return
    # ONNX labels are int64 or strings: whole numbers stay numbers, anything else is named by its text
    numbers = np.issubdtype(labels.dtype, np.number) and bool(np.all(np.mod(labels, 1) == 0))
    answer = graph.graph.output[0]
    index = f"{answer.name}_index"
    for node in graph.graph.node:
        node.output[:] = [index if name == answer.name else name for name in node.output]
    values = {"values_int64s": labels.astype(np.int64).tolist()} if numbers else {"values_strings": labels.astype(str).tolist()}
    graph.graph.node.append(helper.make_node(
        "LabelEncoder", [index], [answer.name], domain="ai.onnx.ml", keys_int64s=list(range(len(labels))), **values
    ))
    answer.type.tensor_type.elem_type = TensorProto.INT64 if numbers else TensorProto.STRING


def _register_boosting_converters() -> None:
    """skl2onnx knows scikit-learn; onnxmltools brings LightGBM's and XGBoost's converters to it."""
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for kind, alias, shapes, converter, options in (
        (LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes, convert_lightgbm, classifier_options),
        (LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm, None),
        (XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost, classifier_options),
        (XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost, None),
    ):
        update_registered_converter(kind, alias, shapes, converter, options=options)
