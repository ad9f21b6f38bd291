"""Open Inference Protocol (V2) over HTTP: tensor decoding with datatype and shape checks, the binary
tensor extension, response encoding, and metadata.

What an infer request may hold:

* ``inputs``: a non-empty list of ``{"name", "shape", "datatype", "data", "parameters"?}``. ``data`` is
  flat (row-major) or nested; either way its element count must equal the product of ``shape``.
  Values must fit the datatype: integers for INT*/UINT* (1.5 is refused, not truncated) within the
  type's range, numbers for FP* (integers are fine) within the type's range, ``true``/``false`` for
  BOOL, strings for BYTES.
* Binary tensor data (the extension Triton and KServe call ``binary_tensor_data``): with the request
  header ``Inference-Header-Content-Length: N``, the first N bytes of the body are the JSON and the
  rest holds raw tensors; an input with ``parameters.binary_data_size: n`` has no ``data`` and takes the
  next n bytes, in input order (layout in ``binary.py``). Together they must use up the body exactly.
* One input is the model's input as is, except that for tabular models (rows of features) an input of
  shape ``[N]`` is a single column ``[N, 1]``.
* Several inputs are stacked as the columns of one ``[N, k]`` input; each must have shape ``[N]`` or
  ``[N, 1]`` with the same N. Columns are ordered by the model's feature names when the input names
  are exactly those names, else in request order. (ONNX graphs with several inputs instead get each
  input by name.)
* ``outputs`` (optional): ``[{"name": ..., "parameters"?: {"binary_data": bool}}]`` restricts the
  response to those outputs. ``parameters.binary_data_output: true`` on the request asks for every
  output in binary; an output's own ``binary_data`` overrides that. When any output is binary the
  response is the JSON header (those outputs carry ``parameters.binary_data_size`` instead of ``data``)
  followed by their bytes, with the header's length in ``Inference-Header-Content-Length``.
* ``id`` (optional): echoed in the response; a fresh one is made when absent, as KServe does.

Response data is always flat (row-major), with the output's shape.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferbox.server.datatypes import NUMPY_DTYPES, datatype_of
from inferbox.server.errors import InferenceError
from inferbox.server.model import Model
from inferbox.server.protocol import binary, dumps, parse_json_object

# Largest finite value of the narrower float types; float64 needs no check (JSON has no infinities).
_FLOAT_LIMITS = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}

#: The extensions listed in server metadata (HTTP ``GET /v2`` and gRPC ``ServerMetadata``).
EXTENSIONS = ("binary_tensor_data",)


@dataclass(slots=True)
class InferRequest:
    """A decoded infer request: either ``x`` (the single, batchable model input) or ``feeds`` (named
    inputs of a multi-input model) is set. ``binary_outputs`` is the request-wide wish for binary
    outputs, ``binary_by_output`` each output's own."""

    id: str
    x: np.ndarray | None
    feeds: dict[str, np.ndarray] | None
    outputs: list[str] | None
    binary_outputs: bool = False
    binary_by_output: dict[str, bool] = field(default_factory=dict)


def split_body(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview | None]:
    """The JSON part and the binary part of a body, given the raw ``Inference-Header-Content-Length``
    header value (None when the header is absent: all JSON, no binary part)."""
    if header_length is None:
        return body, None
    text = header_length.strip()
    # isdigit on bytes is ASCII only: no sign, no spaces inside, no other digits.
    if not text.isdigit() or len(text) > 20:
        raise InferenceError(
            400, "Inference-Header-Content-Length must be a non-negative integer (the JSON header's length)"
        )
    length = int(text)
    if length > len(body):
        raise InferenceError(
            400,
            f"Inference-Header-Content-Length is {length}, but the body has only {len(body)} bytes",
        )
    return body[:length], memoryview(body)[length:]


def decode(body: bytes, model: Model, header_length: bytes | None = None) -> InferRequest:
    """Decode and check an infer request body for ``model`` (raises 400 on any problem);
    ``header_length`` is the ``Inference-Header-Content-Length`` header, when given."""
    header, raw = split_body(body, header_length)
    payload = parse_json_object(header)
    request_id = payload.get("id")
    if request_id is None:
        request_id = os.urandom(16).hex()  # as unique as uuid4().hex, at a tenth of the cost
    elif not isinstance(request_id, str):
        raise InferenceError(400, '"id" must be a string')
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InferenceError(400, 'request must have "inputs": a non-empty list of tensors')
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for index, spec in enumerate(inputs):
        name, array, used = decode_tensor(spec, index, raw, offset)
        offset += used
        if name in tensors:
            raise InferenceError(400, f"input {name!r} is given twice")
        tensors[name] = array
    if raw is not None and offset != len(raw):
        raise InferenceError(
            400,
            f"the body holds {len(raw)} bytes after the JSON header, but the inputs'"
            f" binary_data_size add up to {offset}",
        )
    requested, by_output = requested_outputs(payload.get("outputs"), model)
    wanted = _parameters(payload, "request").get("binary_data_output", False)
    if not isinstance(wanted, bool):
        raise InferenceError(400, '"parameters.binary_data_output" must be true or false')
    request = assemble(request_id, tensors, requested, model)
    request.binary_outputs = wanted
    request.binary_by_output = by_output
    return request


def assemble(
    request_id: str, tensors: dict[str, np.ndarray], requested: list[str] | None, model: Model
) -> InferRequest:
    """The request for decoded input tensors (shared by HTTP and gRPC): one batchable input, or
    named feeds for a model that takes several."""
    if model.named_inputs and len(tensors) > 1:
        return InferRequest(request_id, None, tensors, requested)
    return InferRequest(request_id, model.prepare(_combine(tensors, model)), None, requested)


def _parameters(spec: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = spec.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InferenceError(400, f'"parameters" of the {what} must be an object')
    return parameters


def tensor_header(spec: Any, index: int) -> tuple[str, str, list[int]]:
    """A request tensor's name, datatype and shape, checked (raises 400)."""
    if not isinstance(spec, dict):
        raise InferenceError(400, f"inputs[{index}] must be an object")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InferenceError(400, f'inputs[{index}] needs a "name" string')
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InferenceError(400, f'input {name!r} needs a "shape": a list of non-negative integers')
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise InferenceError(
            400, f"input {name!r} has datatype {datatype!r}; expected one of {', '.join(NUMPY_DTYPES)}"
        )
    return name, datatype, shape


def decode_tensor(
    spec: Any, index: int = 0, raw: memoryview | None = None, offset: int = 0
) -> tuple[str, np.ndarray, int]:
    """Decode one request tensor to a numpy array of its datatype and shape (raises 400), from its
    JSON ``data`` or from ``raw`` at ``offset``; also returns how many raw bytes it used."""
    name, datatype, shape = tensor_header(spec, index)
    size = _parameters(spec, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InferenceError(400, f"input {name!r}: binary_data_size must be a non-negative integer")
        if "data" in spec:
            raise InferenceError(400, f'input {name!r} has both "data" and binary_data_size')
        if raw is None:
            raise InferenceError(
                400,
                f"input {name!r} has binary_data_size but the request has no Inference-Header-Content-Length",
            )
        if size > len(raw) - offset:
            raise InferenceError(
                400,
                f"input {name!r}: binary_data_size {size} runs past the end of the body"
                f" ({len(raw) - offset} bytes remain)",
            )
        return name, binary.from_raw(name, datatype, shape, raw[offset : offset + size]), size
    if "data" not in spec:
        raise InferenceError(400, f'input {name!r} has no "data"')
    return name, typed_array(name, datatype, shape, spec["data"]), 0


def typed_array(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """An array of ``shape`` from values given as such (JSON ``data``, gRPC typed contents), checked
    against the datatype's range (raises 400)."""
    dtype = NUMPY_DTYPES[datatype]
    array = _bytes_array(name, data) if datatype == "BYTES" else _numeric_array(name, datatype, dtype, data)
    expected = math.prod(shape)
    if array.size != expected:
        raise InferenceError(
            400,
            f"input {name!r} has shape {shape}, which needs {expected} values; its data holds {array.size}",
        )
    return array.reshape(shape)


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
    # Strings from JSON; bytes too from gRPC's bytes_contents.
    if not all(isinstance(v, str | bytes) for v in array.flat):
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


def requested_outputs(outputs: Any, model: Model) -> tuple[list[str] | None, dict[str, bool]]:
    """The names of the outputs asked for (None: all), and each one's own ``binary_data`` wish."""
    if outputs is None:
        return None, {}
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
    by_output: dict[str, bool] = {}
    for spec in outputs:
        wish = _parameters(spec, f"output {spec['name']!r}").get("binary_data")
        if wish is None:
            continue
        if not isinstance(wish, bool):
            raise InferenceError(400, f"output {spec['name']!r}: binary_data must be true or false")
        by_output[spec["name"]] = wish
    return names, by_output


def encode(
    model_name: str, request: InferRequest, names: list[str], arrays: list[np.ndarray]
) -> tuple[bytes, int | None]:
    """The infer response body (every output, or those the request asked for, with flat data) and,
    when some outputs are binary, the length of its JSON header (else None: the body is all JSON)."""
    wanted = request.outputs
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in zip(names, arrays, strict=False):
        if wanted is not None and name not in wanted:
            continue
        if request.binary_by_output.get(name, request.binary_outputs):
            array = np.asarray(array)
            datatype = datatype_of(array.dtype)
            blob = binary.to_raw(array, datatype)
            blobs.append(blob)
            outputs.append(
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(blob)},
                }
            )
        else:
            outputs.append(_encode_tensor(name, array))
    header = dumps({"model_name": model_name, "id": request.id, "outputs": outputs})
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


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
    return dumps({"name": "inferbox", "version": version, "extensions": list(EXTENSIONS)})
