"""Open Inference Protocol (V2) over HTTP/JSON: tensor decoding with datatype and shape checks,
response encoding, and metadata.

What an infer request may hold:

* ``inputs``: a non-empty list of ``{"name", "shape", "datatype", "data", "parameters"?}``. ``data`` is
  flat (row-major) or nested; either way its element count must equal the product of ``shape``.
  Values must fit the datatype: integers for INT*/UINT* (1.5 is refused, not truncated) within the
  type's range, numbers for FP* (integers are fine) within the type's range, ``true``/``false`` for
  BOOL, strings for BYTES. Binary (non-JSON) tensor data is not supported.
* One input is the model's input as is, except that for tabular models (rows of features) an input of
  shape ``[N]`` is a single column ``[N, 1]``.
* Several inputs are stacked as the columns of one ``[N, k]`` input; each must have shape ``[N]`` or
  ``[N, 1]`` with the same N. Columns are ordered by the model's feature names when the input names
  are exactly those names, else in request order. (ONNX graphs with several inputs instead get each
  input by name.)
* ``outputs`` (optional): ``[{"name": ...}]`` restricts the response to those outputs.
* ``id`` (optional): echoed in the response; a fresh one is made when absent, as KServe does.

Response data is always flat (row-major), with the output's shape.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferbox.server.datatypes import NUMPY_DTYPES, datatype_of
from inferbox.server.errors import InferenceError
from inferbox.server.model import Model
from inferbox.server.protocol import dumps, parse_json_object

# Largest finite value of the narrower float types; float64 needs no check (JSON has no infinities).
_FLOAT_LIMITS = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}


@dataclass(slots=True)
class InferRequest:
    """A decoded infer request: either ``x`` (the single, batchable model input) or ``feeds`` (named
    inputs of a multi-input model) is set."""

    id: str
    x: np.ndarray | None
    feeds: dict[str, np.ndarray] | None
    outputs: list[str] | None


def decode(body: bytes, model: Model) -> InferRequest:
    """Decode and check an infer request body for ``model`` (raises 400 on any problem)."""
    payload = parse_json_object(body)
    request_id = payload.get("id")
    if request_id is None:
        request_id = os.urandom(16).hex()  # as unique as uuid4().hex, at a tenth of the cost
    elif not isinstance(request_id, str):
        raise InferenceError(400, '"id" must be a string')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InferenceError(400, 'request must have "inputs": a non-empty list of tensors')
    tensors: dict[str, np.ndarray] = {}
    for index, spec in enumerate(inputs):
        name, array = decode_tensor(spec, index)
        if name in tensors:
            raise InferenceError(400, f"input {name!r} is given twice")
        tensors[name] = array
    requested = _requested_outputs(payload.get("outputs"), model)
    if model.named_inputs and len(tensors) > 1:
        return InferRequest(request_id, None, tensors, requested)
    return InferRequest(request_id, model.prepare(_combine(tensors, model)), None, requested)


def decode_tensor(spec: Any, index: int = 0) -> tuple[str, np.ndarray]:
    """Decode one request tensor to a numpy array of its datatype and shape (raises 400)."""
    if not isinstance(spec, dict):
        raise InferenceError(400, f"inputs[{index}] must be an object")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InferenceError(400, f'inputs[{index}] needs a "name" string')
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InferenceError(400, f'input {name!r} needs a "shape": a list of non-negative integers')
    datatype = spec.get("datatype")
    dtype = NUMPY_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InferenceError(
            400, f"input {name!r} has datatype {datatype!r}; expected one of {', '.join(NUMPY_DTYPES)}"
        )
    if "data" not in spec:
        raise InferenceError(400, f'input {name!r} has no "data"')
    data = spec["data"]
    assert isinstance(datatype, str)  # a known datatype: NUMPY_DTYPES has only strings
    array = _bytes_array(name, data) if datatype == "BYTES" else _numeric_array(name, datatype, dtype, data)
    expected = math.prod(shape)
    if array.size != expected:
        raise InferenceError(
            400,
            f"input {name!r} has shape {shape}, which needs {expected} values; its data holds {array.size}",
        )
    return name, array.reshape(shape)


def _numeric_array(name: str, datatype: str, dtype: np.dtype, data: Any) -> np.ndarray:
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):
        raise InferenceError(
            400, f"input {name!r} has ragged data (nested lists of different lengths)"
        ) from None
    if raw.size == 0:
        return raw.astype(dtype)
    kind = raw.dtype.kind
    if dtype.kind == "b":
        if kind != "b":
            raise InferenceError(400, f"input {name!r} is BOOL, so its data must be true/false values")
        return raw
    if dtype.kind in "iu" and kind in "iufO":
        return _integer_array(name, datatype, dtype, data, raw)
    if kind not in "iuf":
        raise InferenceError(
            400, f"input {name!r} is {datatype}, but its data holds values that are not numbers"
        )
    limit = _FLOAT_LIMITS.get(datatype)
    if limit is not None:  # FP16/FP32: JSON numbers are float64 (or ints) and may not fit
        too_big = float(np.abs(raw).max()) > limit if kind == "f" else raw.max() > limit or raw.min() < -limit
        if too_big:
            raise InferenceError(400, f"input {name!r}: a value is out of range for {datatype}")
    return raw.astype(dtype)


def _integer_array(name: str, datatype: str, dtype: np.dtype, data: Any, raw: np.ndarray) -> np.ndarray:
    info = np.iinfo(dtype)
    if raw.dtype == dtype:  # numpy chose this very type, so every value fits
        return raw
    if raw.dtype.kind in "iu":
        low, high = raw.min(), raw.max()
    else:
        # Floats or objects: either real non-integers, or ints numpy could not give one integer type
        # (2**64 - 1 next to 1 becomes a float). Judge the JSON values themselves.
        values = np.asarray(data, dtype=object).reshape(-1)
        if not all(type(v) is int for v in values):
            raise InferenceError(400, f"input {name!r} is {datatype}, but its data holds non-integer values")
        low, high = min(values), max(values)
        raw = values
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise InferenceError(400, f"input {name!r}: value {bad} is out of range for {datatype}")
    return raw.astype(dtype)


def _bytes_array(name: str, data: Any) -> np.ndarray:
    try:
        array = np.asarray(data, dtype=object)
    except (ValueError, TypeError):
        raise InferenceError(
            400, f"input {name!r} has ragged data (nested lists of different lengths)"
        ) from None
    if array.ndim == 0:
        array = array.reshape(1)
    if not all(isinstance(v, str) for v in array.flat):
        raise InferenceError(400, f"input {name!r} is BYTES, so its data must be strings")
    return array


def _combine(tensors: dict[str, np.ndarray], model: Model) -> np.ndarray:
    if len(tensors) == 1:
        (x,) = tensors.values()
        return x.reshape(-1, 1) if model.tabular and x.ndim == 1 else x
    names = list(tensors)
    if model.feature_names is not None and set(names) == set(model.feature_names):
        names = list(model.feature_names)
    columns = []
    for name in names:
        column = tensors[name]
        if not (column.ndim == 1 or (column.ndim == 2 and column.shape[1] == 1)):
            raise InferenceError(
                400,
                f"input {name!r} has shape {list(column.shape)}: with several inputs each must be one column,"
                " of shape [N] or [N, 1]",
            )
        columns.append(column.reshape(-1))
    if len({len(c) for c in columns}) > 1:
        raise InferenceError(400, "the inputs must all have the same number of rows")
    return np.column_stack(columns)


def _requested_outputs(outputs: Any, model: Model) -> list[str] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InferenceError(400, '"outputs" must be a list of objects with a "name"')
    known = model.output_names
    names = [o["name"] for o in outputs]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InferenceError(
            400, f"unknown output {unknown[0]!r}; the model's outputs are {', '.join(known)}"
        )
    return names


def encode(model_name: str, request: InferRequest, names: list[str], arrays: list[np.ndarray]) -> bytes:
    """The infer response body: every output, or those the request asked for, with flat data."""
    wanted = request.outputs
    outputs = [
        _encode_tensor(name, array)
        for name, array in zip(names, arrays, strict=False)
        if wanted is None or name in wanted
    ]
    return dumps({"model_name": model_name, "id": request.id, "outputs": outputs})


def _encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    datatype = datatype_of(array.dtype)
    flat = array.reshape(-1)
    data: Any = flat
    if datatype == "BYTES":
        data = [v if isinstance(v, str) else _text(v) for v in flat.tolist()]
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return dumps(value).decode()


def model_metadata(name: str, model: Model) -> bytes:
    """The body of ``GET /v2/models/{name}``."""
    return dumps(
        {
            "name": name,
            "versions": ["1"],
            "platform": model.platform,
            "inputs": [spec.to_json() for spec in model.inputs],
            "outputs": [spec.to_json() for spec in model.outputs],
        }
    )


def server_metadata(version: str) -> bytes:
    """The body of ``GET /v2``."""
    return dumps({"name": "inferbox", "version": version, "extensions": []})
