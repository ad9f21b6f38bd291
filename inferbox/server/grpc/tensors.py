"""ModelInfer's tensors: protobuf request -> the V2 request the HTTP server decodes too, and outputs ->
protobuf response.

Inputs come either all as ``raw_input_contents`` (one entry per input, the layout of
``protocol/binary.py``; what tritonclient sends) or each in the typed ``contents`` field of its
datatype (what kserve's client sends by default); FP16 exists only as raw. Outputs always go back as
``raw_output_contents``, as Triton answers: tritonclient reads only that, kserve reads both.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from inferbox.server.datatypes import NUMPY_DTYPES, datatype_of
from inferbox.server.errors import InferenceError
from inferbox.server.grpc import oip_pb2 as pb
from inferbox.server.model import Model
from inferbox.server.protocol import binary
from inferbox.server.protocol.v2 import InferRequest, assemble, requested_outputs, typed_array

# Which InferTensorContents field holds each datatype's values.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_request(request: pb.ModelInferRequest, model: Model) -> InferRequest:
    """The checked V2 request for a ModelInfer call (raises 400 on any problem)."""
    if not request.inputs:
        raise InferenceError(400, "request must have inputs: a non-empty list of tensors")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InferenceError(
            400, f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InferenceError(400, f"inputs[{index}] needs a name")
        if name in tensors:
            raise InferenceError(400, f"input {name!r} is given twice")
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):
            raise InferenceError(400, f"input {name!r} needs a shape of non-negative integers")
        datatype = tensor.datatype
        if datatype not in NUMPY_DTYPES:
            raise InferenceError(
                400, f"input {name!r} has datatype {datatype!r}; expected one of {', '.join(NUMPY_DTYPES)}"
            )
        if raw:
            if tensor.HasField("contents"):
                raise InferenceError(
                    400, f"input {name!r} has contents, but the request uses raw_input_contents"
                )
            tensors[name] = binary.from_raw(name, datatype, shape, raw[index])
        else:
            tensors[name] = _typed(name, datatype, shape, tensor.contents)
    wanted = [{"name": o.name} for o in request.outputs] or None
    names, _ = requested_outputs(wanted, model)
    return assemble(request.id or os.urandom(16).hex(), tensors, names, model)


def _typed(name: str, datatype: str, shape: list[int], contents: pb.InferTensorContents) -> np.ndarray:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InferenceError(400, f"input {name!r} is {datatype}, which travels only as raw_input_contents")
    values: Any = list(getattr(contents, field))
    if datatype == "BYTES":  # as from raw contents: text when UTF-8, else bytes
        values = [binary.text_or_bytes(v) for v in values]
    return typed_array(name, datatype, shape, values)


def encode_response(
    model_name: str, request: InferRequest, names: list[str], arrays: list[np.ndarray]
) -> pb.ModelInferResponse:
    """The ModelInfer response: every output, or those asked for, as raw contents."""
    response = pb.ModelInferResponse(model_name=model_name, model_version="1", id=request.id)
    for name, array in zip(names, arrays, strict=False):
        if request.outputs is not None and name not in request.outputs:
            continue
        array = np.asarray(array)
        datatype = datatype_of(array.dtype)
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(binary.to_raw(array, datatype))
    return response
