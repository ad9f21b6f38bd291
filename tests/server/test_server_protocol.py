"""Protocol decoding and encoding as pure functions (no server): the V2 datatype rules in detail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from inferbox.server.errors import InferenceError
from inferbox.server.frameworks import load_model
from inferbox.server.model import Model
from inferbox.server.protocol import v1, v2


@pytest.fixture(scope="module")
def sklearn_model(sklearn_dir: Path) -> Model:
    return load_model("sklearn", sklearn_dir / "model.joblib")


def tensor(data: Any, shape: list[int], datatype: str) -> dict[str, Any]:
    return {"name": "t", "shape": shape, "datatype": datatype, "data": data}


@pytest.mark.parametrize(
    ("datatype", "data", "dtype"),
    [
        ("BOOL", [True, False], np.bool_),
        ("INT8", [-128, 127], np.int8),
        ("INT16", [-1, 2], np.int16),
        ("INT32", [2**31 - 1, -(2**31)], np.int32),
        ("INT64", [2**63 - 1, 0], np.int64),
        ("UINT8", [0, 255], np.uint8),
        ("UINT16", [65535, 1], np.uint16),
        ("UINT32", [2**32 - 1, 1], np.uint32),
        ("UINT64", [2**64 - 1, 1], np.uint64),
        ("FP16", [1.5, 2], np.float16),
        ("FP32", [1.5, 2], np.float32),
        ("FP64", [1.5, 2], np.float64),
        ("BYTES", ["a", "bc"], object),
    ],
)
def test_every_datatype_decodes(datatype: str, data: list[Any], dtype: type) -> None:
    name, array, _ = v2.decode_tensor(tensor(data, [2], datatype))
    assert name == "t"
    assert array.dtype == np.dtype(dtype)
    assert array.tolist() == data


@pytest.mark.parametrize(
    ("datatype", "data", "fragment"),
    [
        ("INT32", [1.5], "non-integer"),
        ("INT8", [128], "128 is out of range for INT8"),
        ("UINT8", [300], "300 is out of range for UINT8"),
        ("UINT32", [-1], "-1 is out of range"),
        ("INT64", [2**64], "out of range"),
        ("FP32", ["abc"], "not numbers"),
        ("FP16", [70000], "out of range for FP16"),
        ("FP64", [True], "not numbers"),
        ("BOOL", [1], "true/false"),
        ("BYTES", [1], "strings"),
        ("FP32", [[1, 2], [3]], "ragged"),
    ],
)
def test_values_must_fit_the_datatype(datatype: str, data: list[Any], fragment: str) -> None:
    with pytest.raises(InferenceError, match=fragment) as info:
        v2.decode_tensor(tensor(data, [len(data)], datatype))
    assert info.value.status == 400


def test_nested_and_flat_data_are_the_same_tensor() -> None:
    _, flat, _ = v2.decode_tensor(tensor([1, 2, 3, 4, 5, 6], [2, 3], "INT32"))
    _, nested, _ = v2.decode_tensor(tensor([[1, 2, 3], [4, 5, 6]], [2, 3], "INT32"))
    np.testing.assert_array_equal(flat, nested)
    assert flat.shape == (2, 3)
    _, empty, _ = v2.decode_tensor(tensor([], [0, 3], "INT32"))
    assert empty.shape == (0, 3) and empty.dtype == np.int32


def test_encode_flattens_and_names_datatypes() -> None:
    request = v2.InferRequest(id="r", x=None, feeds=None, outputs=None)
    encoded, header_length = v2.encode(
        "m",
        request,
        ["a", "b", "c"],
        [
            np.array([[1.5, 2], [3, 4]], dtype=np.float32),
            np.array(["x", "y"], dtype=object),
            np.array([True]),
        ],
    )
    assert header_length is None  # nothing asked for binary: all JSON
    body = orjson.loads(encoded)
    assert body == {
        "model_name": "m",
        "id": "r",
        "outputs": [
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1.5, 2.0, 3.0, 4.0]},
            {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]},
            {"name": "c", "shape": [1], "datatype": "BOOL", "data": [True]},
        ],
    }


def test_v1_encode_keeps_ints_and_handles_strings() -> None:
    assert v1.encode(np.array([1, 2], dtype=np.int64)) == b'{"predictions":[1,2]}'
    assert v1.encode(np.array(["setosa"], dtype=object)) == b'{"predictions":["setosa"]}'
    assert v1.encode(np.arange(6.0).reshape(2, 3)[:, 1]) == b'{"predictions":[1.0,4.0]}'  # non-contiguous


def test_single_vector_input_is_one_column_for_tabular_models(sklearn_model: Model) -> None:
    body = orjson.dumps({"inputs": [tensor([1, 2, 3, 4], [4], "FP64")]})
    with pytest.raises(InferenceError, match="expected 4 feature values per row, got 1"):
        v2.decode(body, sklearn_model)


def test_columns_follow_request_order(sklearn_model: Model) -> None:
    inputs = [
        {"name": n, "shape": [2], "datatype": "FP64", "data": [i, i + 10]} for i, n in enumerate("dcba")
    ]
    request = v2.decode(orjson.dumps({"inputs": inputs}), sklearn_model)
    assert request.x is not None
    np.testing.assert_array_equal(request.x, [[0, 1, 2, 3], [10, 11, 12, 13]])
