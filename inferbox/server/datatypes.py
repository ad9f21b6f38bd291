"""Open Inference Protocol tensor datatypes and their numpy counterparts."""

from __future__ import annotations

import numpy as np

#: Every V2 datatype the server accepts, with the numpy dtype its data is decoded to. BYTES tensors hold
#: strings and are decoded to numpy object arrays.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

_BY_NUMPY: dict[np.dtype, str] = {dtype: name for name, dtype in NUMPY_DTYPES.items()}


def datatype_of(dtype: np.dtype) -> str:
    """The V2 datatype name for a numpy dtype; strings, bytes and Python objects are BYTES."""
    name = _BY_NUMPY.get(dtype)
    if name is not None:
        return name
    if dtype.kind in "USO":
        return "BYTES"
    raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
