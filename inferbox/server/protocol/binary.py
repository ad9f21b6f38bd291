"""Raw tensor bytes <-> numpy arrays, for every Open Inference Protocol datatype.

One codec for the two places tensors travel as raw bytes: the HTTP binary tensor extension (a JSON
header followed by each tensor's bytes, ``Inference-Header-Content-Length`` giving the header's length)
and gRPC's ``raw_input_contents`` / ``raw_output_contents``. The layout is the one Triton and KServe use:
flat, row-major, little-endian, no padding; BOOL is one byte per element; BYTES is each element
preceded by its length as a 4-byte little-endian unsigned integer.

Every size is checked against the bytes actually there before anything is read, so a lying header or
prefix is a 400, never an over-read or a huge allocation.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from inferbox.server.datatypes import NUMPY_DTYPES
from inferbox.server.errors import InferenceError

_LENGTH = struct.Struct("<I")


def from_raw(name: str, datatype: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    """Decode one tensor's raw bytes into an array of ``shape`` (raises 400 when they do not fit)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(name, raw, count).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InferenceError(
            400,
            f"input {name!r} has shape {shape} and datatype {datatype}, which needs {expected} bytes;"
            f" it has {len(raw)}",
        )
    if datatype == "BOOL":
        values = np.frombuffer(raw, dtype=np.uint8)
        if values.size and int(values.max()) > 1:
            raise InferenceError(400, f"input {name!r} is BOOL, so each byte must be 0 or 1")
        return values.astype(np.bool_).reshape(shape)
    # A copy: the request's buffer is not kept alive by the array, and the array is writable.
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _bytes_elements(name: str, raw: bytes | memoryview, count: int) -> np.ndarray:
    view = memoryview(raw)
    if count * _LENGTH.size > len(view):  # before allocating: a huge shape must not cost memory
        raise InferenceError(
            400,
            f"input {name!r}: {count} BYTES elements need at least {count * _LENGTH.size} bytes;"
            f" it has {len(view)}",
        )
    out = np.empty(count, dtype=object)
    offset = 0
    end = len(view)
    for i in range(count):
        if end - offset < _LENGTH.size:
            raise InferenceError(
                400, f"input {name!r}: BYTES element {i} has no 4-byte length prefix (the data ends)"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if length > end - offset:
            raise InferenceError(
                400,
                f"input {name!r}: BYTES element {i} claims {length} bytes, but only {end - offset} remain",
            )
        out[i] = text_or_bytes(bytes(view[offset : offset + length]))
        offset += length
    if offset != end:
        raise InferenceError(
            400, f"input {name!r}: {end - offset} bytes left over after its {count} BYTES elements"
        )
    return out


def text_or_bytes(value: bytes) -> str | bytes:
    # Models here take text (as JSON BYTES tensors give them); bytes that are not UTF-8 stay bytes.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of an output array of ``datatype`` (its V2 datatype, see ``datatype_of``)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.reshape(-1).tolist():
            data = element_bytes(value)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    dtype = NUMPY_DTYPES[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def element_bytes(value: Any) -> bytes:
    """One BYTES element as bytes: strings as UTF-8, bytes as they are, anything else as its text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")
