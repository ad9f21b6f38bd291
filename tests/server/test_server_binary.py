"""The binary tensor extension on a replica: tritonclient's binary inputs and outputs, every datatype's
layout, and hostile headers and sizes (each a 400 in the error shape, the replica still serving)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from server_helpers import ServerProcess, assert_error
from trained import Iris
from tritonclient.utils import InferenceServerException

from inferbox.server.errors import InferenceError
from inferbox.server.protocol import binary

pytestmark = pytest.mark.timeout(120)

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def triton(server: ServerProcess) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(server.base_url.removeprefix("http://"))


def post_binary(
    server: ServerProcess, header: dict[str, Any], raw: bytes, length: str | None = None
) -> httpx.Response:
    """POST a binary-extension body: the JSON header, then ``raw``; ``length`` overrides the header."""
    head = orjson.dumps(header)
    return httpx.post(
        f"{server.base_url}/v2/models/iris/infer",
        content=head + raw,
        headers={
            "Inference-Header-Content-Length": str(len(head)) if length is None else length,
            "Content-Type": "application/octet-stream",
        },
    )


def one_input(shape: list[int], datatype: str, size: int) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": shape,
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ]
    }


def assert_still_serving(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    response = httpx.post(f"{server.base_url}/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text


# -- tritonclient.http, binary both ways ------------------------------------------------------------


@pytest.mark.parametrize("binary_out", [True, False])
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_tritonclient_binary_inputs_and_outputs(
    sklearn_server: ServerProcess, sklearn_dir: Path, datatype: str, binary_out: bool
) -> None:
    estimator = joblib.load(sklearn_dir / "model.joblib")
    x = np.array(ROWS, dtype=np.float64 if datatype == "FP64" else np.float32)
    client = triton(sklearn_server)
    inp = triton_http.InferInput("input-0", list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=True)
    out = triton_http.InferRequestedOutput("output-0", binary_data=binary_out)
    result = client.infer("iris", [inp], outputs=[out], request_id="r-1")
    predicted = result.as_numpy("output-0")
    assert predicted is not None and predicted.dtype == np.int64
    assert predicted.tolist() == estimator.predict(x.astype(np.float64)).tolist()
    response = result.get_response()
    assert response["id"] == "r-1"
    (output,) = response["outputs"]
    if binary_out:
        assert output["parameters"] == {"binary_data_size": 8 * len(ROWS)}
        assert "data" not in output
    else:
        assert output["data"] == predicted.tolist()


def test_tritonclient_json_inputs_binary_output(sklearn_server: ServerProcess, iris: Iris) -> None:
    x = np.array(iris.X[:32], dtype=np.float64)
    inp = triton_http.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=False)
    result = triton(sklearn_server).infer(
        "iris", [inp], outputs=[triton_http.InferRequestedOutput("output-0", binary_data=True)]
    )
    predicted = result.as_numpy("output-0")
    assert predicted is not None and predicted.shape == (32,)
    assert set(predicted.tolist()) <= {0, 1, 2}


def test_tritonclient_metadata_lists_the_extension(sklearn_server: ServerProcess) -> None:
    client = triton(sklearn_server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def test_request_wide_binary_output_and_response_headers(sklearn_server: ServerProcess) -> None:
    raw = np.array(ROWS, dtype="<f8").tobytes()
    header = {**one_input([3, 4], "FP64", len(raw)), "parameters": {"binary_data_output": True}}
    response = post_binary(sklearn_server, header, raw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    head = orjson.loads(response.content[:length])
    (output,) = head["outputs"]
    assert output["shape"] == [3] and output["datatype"] == "INT64"
    tail = response.content[length:]
    assert len(tail) == output["parameters"]["binary_data_size"] == 24
    assert np.frombuffer(tail, dtype="<i8").tolist() == [0, 2, 1]


def test_an_output_can_opt_out_of_request_wide_binary(sklearn_server: ServerProcess) -> None:
    raw = np.array(ROWS, dtype="<f8").tobytes()
    header = {
        **one_input([3, 4], "FP64", len(raw)),
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "output-0", "parameters": {"binary_data": False}}],
    }
    response = post_binary(sklearn_server, header, raw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"][0]["data"] == [0, 2, 1]


def test_binary_and_json_inputs_mix_as_columns(sklearn_server: ServerProcess, sklearn_dir: Path) -> None:
    estimator = joblib.load(sklearn_dir / "model.joblib")
    x = np.array(ROWS)
    inputs: list[dict[str, Any]] = []
    raw = b""
    for i in range(4):
        column = x[:, i]
        if i % 2:  # odd columns in binary, even ones as JSON data
            blob = column.astype("<f4").tobytes()
            raw += blob
            inputs.append(
                {
                    "name": f"c{i}",
                    "shape": [3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            )
        else:
            inputs.append({"name": f"c{i}", "shape": [3], "datatype": "FP64", "data": column.tolist()})
    response = post_binary(sklearn_server, {"inputs": inputs}, raw)
    assert response.status_code == 200, response.text
    expected = estimator.predict(
        np.column_stack([x[:, i].astype(np.float32) if i % 2 else x[:, i] for i in range(4)])
    )
    assert response.json()["outputs"][0]["data"] == expected.tolist()


# -- hostile headers and sizes ----------------------------------------------------------------------

RAW = np.array(ROWS[:1], dtype="<f8").tobytes()  # 32 bytes: one row of 4 FP64


@pytest.mark.parametrize(
    ("length", "fragment"),
    [
        ("abc", "must be a non-negative integer"),
        ("-1", "must be a non-negative integer"),
        ("1.5", "must be a non-negative integer"),
        ("", "must be a non-negative integer"),
        ("99999999999999999999999999", "must be a non-negative integer"),
        ("1000000", "the body has only"),
        ("5", "malformed JSON"),  # the header cut in the middle of the JSON
    ],
)
def test_lying_header_length_is_400(sklearn_server: ServerProcess, length: str, fragment: str) -> None:
    response = post_binary(sklearn_server, one_input([1, 4], "FP64", len(RAW)), RAW, length=length)
    assert_error(response, 400, fragment)
    assert_still_serving(sklearn_server)


@pytest.mark.parametrize(
    ("header", "raw", "fragment"),
    [
        # binary_data_size past the end of the body
        (one_input([1, 4], "FP64", 4096), RAW, "runs past the end of the body"),
        (one_input([1, 4], "FP64", 2**62), RAW, "runs past the end of the body"),
        (one_input([1, 4], "FP64", -8), RAW, "binary_data_size must be a non-negative integer"),
        (one_input([1, 4], "FP64", "32"), RAW, "binary_data_size must be a non-negative integer"),
        # sizes that do not match shape x datatype
        (one_input([1, 4], "FP32", len(RAW)), RAW, "needs 16 bytes; it has 32"),
        (one_input([2, 4], "FP64", len(RAW)), RAW, "needs 64 bytes; it has 32"),
        (one_input([10**12, 4], "FP64", len(RAW)), RAW, "needs 32000000000000 bytes"),
        (one_input([1, 4], "FP64", 24), RAW, "needs 32 bytes; it has 24"),
        # bytes left over after the inputs
        (one_input([1, 4], "FP64", len(RAW)), RAW + b"xx", "add up to 32"),
        # an unknown datatype, BOOL bytes that are not 0/1
        (one_input([1, 4], "FP128", len(RAW)), RAW, "has datatype 'FP128'"),
        (one_input([1, 4], "BOOL", 4), b"\x00\x01\x02\x00", "each byte must be 0 or 1"),
    ],
)
def test_bad_binary_sizes_are_400(
    sklearn_server: ServerProcess, header: dict[str, Any], raw: bytes, fragment: str
) -> None:
    assert_error(post_binary(sklearn_server, header, raw), 400, fragment)
    assert_still_serving(sklearn_server)


def test_binary_size_without_the_header_is_400(sklearn_server: ServerProcess) -> None:
    response = httpx.post(
        f"{sklearn_server.base_url}/v2/models/iris/infer", json=one_input([1, 4], "FP64", 32)
    )
    assert_error(response, 400, "no Inference-Header-Content-Length")


def test_data_and_binary_size_together_is_400(sklearn_server: ServerProcess) -> None:
    header = one_input([1, 4], "FP64", len(RAW))
    header["inputs"][0]["data"] = ROWS[0]
    assert_error(post_binary(sklearn_server, header, RAW), 400, 'both "data" and binary_data_size')


@pytest.mark.parametrize(
    ("count", "raw", "fragment"),
    [
        (1, struct.pack("<I", 1000) + b"abc", "claims 1000 bytes, but only 3 remain"),
        (1, struct.pack("<I", 2**32 - 1), "claims 4294967295 bytes, but only 0 remain"),
        (2, struct.pack("<I", 1) + b"a" + b"\x01\x00\x00", "element 1 has no 4-byte length prefix"),
        (2, struct.pack("<I", 1) + b"a" + struct.pack("<I", 0) + b"!", "1 bytes left over"),
        (3, struct.pack("<I", 0) * 2, "3 BYTES elements need at least 12 bytes"),
    ],
)
def test_overrunning_bytes_prefixes_are_400(
    sklearn_server: ServerProcess, count: int, raw: bytes, fragment: str
) -> None:
    header = one_input([count], "BYTES", len(raw))
    assert_error(post_binary(sklearn_server, header, raw), 400, fragment)
    assert_still_serving(sklearn_server)


def test_a_huge_bytes_shape_is_refused_before_allocating(sklearn_server: ServerProcess) -> None:
    header = one_input([10**15], "BYTES", 8)
    assert_error(post_binary(sklearn_server, header, b"\x00" * 8), 400, "BYTES elements need at least")


# -- the codec itself, every datatype ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BOOL", [True, False, True]),
        ("INT8", [-128, 0, 127]),
        ("INT16", [-32768, 1, 32767]),
        ("INT32", [-(2**31), 2, 2**31 - 1]),
        ("INT64", [-(2**63), 3, 2**63 - 1]),
        ("UINT8", [0, 1, 255]),
        ("UINT16", [0, 2, 65535]),
        ("UINT32", [0, 3, 2**32 - 1]),
        ("UINT64", [0, 4, 2**64 - 1]),
        ("FP16", [0.5, -1.0, 65504.0]),
        ("FP32", [0.25, -2.5, 3.0e38]),
        ("FP64", [0.125, -1e300, 1e-300]),
        ("BYTES", ["", "héllo", "x" * 300]),
    ],
)
def test_every_datatype_round_trips(datatype: str, values: list[Any]) -> None:
    from inferbox.server.datatypes import NUMPY_DTYPES

    array = np.array(values, dtype=NUMPY_DTYPES[datatype])
    raw = binary.to_raw(array, datatype)
    decoded = binary.from_raw("t", datatype, [3], raw)
    assert decoded.dtype == NUMPY_DTYPES[datatype]
    assert decoded.tolist() == array.tolist()


def test_layout_is_little_endian_and_bytes_are_length_prefixed() -> None:
    assert binary.to_raw(np.array([1, 256], dtype=np.int32), "INT32") == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    assert binary.to_raw(np.array(["ab", b"\xff"], dtype=object), "BYTES") == (
        b"\x02\x00\x00\x00ab\x01\x00\x00\x00\xff"
    )
    decoded = binary.from_raw("t", "BYTES", [2], b"\x02\x00\x00\x00ab\x01\x00\x00\x00\xff")
    assert decoded.tolist() == ["ab", b"\xff"]  # text when UTF-8, bytes otherwise


def test_codec_refuses_short_data() -> None:
    with pytest.raises(InferenceError) as caught:
        binary.from_raw("t", "FP32", [2, 2], b"\x00" * 15)
    assert caught.value.status == 400 and "needs 16 bytes; it has 15" in caught.value.message


def test_tritonclient_reports_the_400(sklearn_server: ServerProcess) -> None:
    """A wrong shape through the real client comes back as its exception, with our message."""
    inp = triton_http.InferInput("input-0", [1, 3], "FP64")
    inp.set_data_from_numpy(np.zeros((1, 3)), binary_data=True)
    with pytest.raises(InferenceServerException, match="expected 4 feature values per row, got 3"):
        triton(sklearn_server).infer("iris", [inp])
