"""KServe V1 ("TensorFlow Serving style") predict requests and responses.

Accepted request bodies (``inputs`` is a synonym of ``instances``, as in KServe; when both are given
``inputs`` wins, again as in KServe):

* ``{"instances": [[5.1, 3.5, 1.4, 0.2], ...]}``: rows of feature values.
* ``{"instances": [{"sepal_length": 5.1, ...}, ...]}``: one object per row. When the model file records
  feature names (a scikit-learn estimator fitted on a DataFrame, an xgboost booster with feature
  names, a LightGBM booster with real names) the keys must be exactly those names and are put in the
  model's order; otherwise the values are taken in the key order of the first object, which every
  other object must share. An object whose values are all lists is a block of columns, several rows
  at once (KServe reads such an object as a DataFrame).
* ``{"inputs": {"a": [...], "b": [...]}}``: TF Serving's columnar form, read as one such block.
* ``{"instances": ["some text", ...]}``: strings, for models that take them (Hugging Face pipelines,
  scikit-learn text pipelines whose input width is unknown).

The response is ``{"predictions": [...]}``, one entry per row, numpy values as plain JSON (ints stay
ints).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inferbox.server.errors import InferenceError
from inferbox.server.model import Model
from inferbox.server.protocol import dumps, parse_json_object


def decode(body: bytes, model: Model) -> np.ndarray:
    """The model input for a V1 predict body, checked and cast by the model (raises 400 otherwise)."""
    payload = parse_json_object(body)
    instances = payload.get("inputs", payload.get("instances"))
    if instances is None:
        raise InferenceError(400, 'request must have "instances" (or "inputs")')
    if isinstance(instances, dict):
        instances = [instances]
    if not isinstance(instances, list) or not instances:
        raise InferenceError(400, '"instances" must be a non-empty list')
    if isinstance(instances[0], dict):
        x = _rows_from_objects(instances, model.feature_names)
    else:
        try:
            x = np.asarray(instances)
        except (ValueError, TypeError):
            raise InferenceError(400, "instances must be rows of the same length holding numbers") from None
        if x.dtype.kind == "O":
            raise InferenceError(400, "instances must be numbers (or, for text models, strings)")
        if x.dtype.kind == "U" and x.ndim > 1:
            # Rows mixing strings and numbers: numpy would turn every number into a string; keep the
            # values as they are for models that take mixed rows (a model that needs numbers refuses).
            x = np.array(instances, dtype=object)
    return model.prepare(x)


def _rows_from_objects(instances: list[Any], feature_names: tuple[str, ...] | None) -> np.ndarray:
    first = instances[0]
    if "datatype" in first and "data" in first:
        raise InferenceError(
            400, "this looks like an Open Inference Protocol (V2) request: POST it to /v2/.../infer"
        )
    # The model's own names decide the columns and their order (as KServe's sklearn server puts an
    # object's keys in feature_names_in_ order); without names, the first object's keys do.
    keys = list(feature_names) if feature_names is not None else list(first)
    key_set = set(keys)
    rows: list[list[Any]] = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InferenceError(400, "instances must be all rows or all objects")
        if instance.keys() != key_set:
            raise InferenceError(400, _key_problem(index, instance, keys, feature_names is not None))
        values = [instance[key] for key in keys]
        if all(isinstance(v, list) for v in values):
            if len({len(v) for v in values}) > 1:
                raise InferenceError(400, "the columns of an instance must have the same length")
            rows.extend(list(row) for row in zip(*values, strict=True))
        else:
            rows.append(values)
    try:
        x = np.asarray(rows)
    except (ValueError, TypeError):
        raise InferenceError(400, "instance values must be numbers or strings") from None
    if x.dtype.kind == "O":
        raise InferenceError(400, "instance values must be numbers or strings")
    if x.dtype.kind == "U":
        x = np.array(rows, dtype=object)  # keep numbers numbers next to strings (see decode)
    return x


def _key_problem(index: int, instance: dict[str, Any], keys: list[str], named: bool) -> str:
    """Which feature instance `index` lacks, or which key it has that the model does not know."""
    whose = "the model's features" if named else "the keys of the first instance"
    missing = [k for k in keys if k not in instance]
    if missing:
        return f"instance {index} is missing feature '{missing[0]}' ({whose}: {', '.join(keys)})"
    unknown = next(str(k) for k in instance if k not in keys)
    return f"instance {index} has unknown feature '{unknown[:100]}' ({whose}: {', '.join(keys)})"


def encode(predictions: np.ndarray) -> bytes:
    """The V1 response body for the first output of a prediction."""
    return dumps({"predictions": predictions})
