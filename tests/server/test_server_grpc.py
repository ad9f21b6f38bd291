"""The gRPC Open Inference Protocol on a replica, with the clients users run: kserve's
InferenceGRPCClient here, tritonclient.grpc in a subprocess (it cannot share a process with kserve),
plus our own stubs for the hostile requests those clients refuse to send."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import httpx
import joblib
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest
from server_helpers import ServerProcess, run_server_to_exit, running_server
from support import wait_for

from inferbox.server.grpc import oip_pb2 as pb

pytestmark = pytest.mark.timeout(120)

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
PROBE = Path(__file__).with_name("triton_grpc_probe.py")
GRPC_PORT_LINE = re.compile(r"^inferbox-model-server: grpc port (\d+)$", re.MULTILINE)


class GrpcServer:
    def __init__(self, server: ServerProcess, port: int) -> None:
        self.server = server
        self.port = port
        self.address = f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def grpc_server(sklearn_dir: Path) -> Iterator[GrpcServer]:
    with running_server("sklearn", sklearn_dir, "--grpc-port", "0") as server:
        found = wait_for(lambda: GRPC_PORT_LINE.search(server.stderr), timeout=30)
        yield GrpcServer(server, int(found.group(1)))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def call(address: str, method: str, request: object, response_type: type) -> object:
    """One raw call with our own stubs, on the service's wire name."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return await stub(request, timeout=30)


def infer(address: str, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    response = run(call(address, "ModelInfer", request, pb.ModelInferResponse))
    assert isinstance(response, pb.ModelInferResponse)
    return response


def infer_error(address: str, request: pb.ModelInferRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        infer(address, request)
    return caught.value


def raw_request(rows: list[list[float]], datatype: str = "FP64", **fields: object) -> pb.ModelInferRequest:
    dtype = {"FP64": "<f8", "FP32": "<f4"}[datatype]
    request = pb.ModelInferRequest(model_name="iris", **fields)  # type: ignore[arg-type]
    request.inputs.add(name="input-0", datatype=datatype, shape=[len(rows), len(rows[0])])
    request.raw_input_contents.append(np.array(rows, dtype=dtype).tobytes())
    return request


# -- kserve's InferenceGRPCClient, in this process ---------------------------------------------------


def test_kserve_grpc_client_health_and_infer(grpc_server: GrpcServer, sklearn_dir: Path) -> None:
    expected = joblib.load(sklearn_dir / "model.joblib").predict(np.array(ROWS)).tolist()

    async def session() -> tuple[list[bool], list[list[int]]]:
        async with InferenceGRPCClient(grpc_server.address, retries=0) as client:
            health = [
                await client.is_server_live(),
                await client.is_server_ready(),
                await client.is_model_ready("iris"),
            ]
            results = []
            for binary_data in (False, True):  # typed contents, then raw_input_contents
                inp = InferInput("input-0", [3, 4], "FP64")
                inp.set_data_from_numpy(np.array(ROWS), binary_data=binary_data)
                response = await client.infer(InferRequest("iris", infer_inputs=[inp], request_id="k-1"))
                assert response.id == "k-1"
                (output,) = response.outputs
                assert output.name == "output-0" and output.datatype == "INT64" and output.shape == [3]
                results.append(output.as_numpy().tolist())
            return health, results

    health, results = run(session())  # type: ignore[misc]
    assert health == [True, True, True]
    assert results == [expected, expected]


def test_kserve_grpc_client_sees_bad_input(grpc_server: GrpcServer) -> None:
    async def session() -> None:
        async with InferenceGRPCClient(grpc_server.address, retries=0) as client:
            inp = InferInput("input-0", [1, 3], "FP64")
            inp.set_data_from_numpy(np.zeros((1, 3)), binary_data=False)
            await client.infer(InferRequest("iris", infer_inputs=[inp]))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        run(session())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 4 feature values per row, got 3" in str(caught.value.details())


# -- tritonclient.grpc, in a subprocess ---------------------------------------------------------------


def test_tritonclient_grpc(grpc_server: GrpcServer, sklearn_dir: Path) -> None:
    expected = joblib.load(sklearn_dir / "model.joblib").predict(np.array(ROWS)).tolist()
    done = subprocess.run(
        [sys.executable, str(PROBE), str(grpc_server.port)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["live"] is True and seen["ready"] is True and seen["model_ready"] is True
    assert seen["other_model_ready"]["status"] == "StatusCode.NOT_FOUND"
    assert seen["extensions"] == ["binary_tensor_data"]
    assert seen["metadata"]["name"] == "iris" and seen["metadata"]["versions"] == ["1"]
    assert seen["metadata"]["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "4"]}]
    assert seen["ours"] == pb.ModelReadyRequest(name="iris").SerializeToString().hex()
    for datatype in ("FP64", "FP32"):
        prediction = seen["predictions"][datatype]
        assert prediction == {"values": expected, "dtype": "int64", "id": f"id-{datatype}"}
    assert seen["bad_width"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "expected 4 feature values per row, got 3" in seen["bad_width"]["message"]


# -- our stubs: every call, and what the clients would not send ------------------------------------------


def test_metadata_and_readiness_calls(grpc_server: GrpcServer) -> None:
    address = grpc_server.address
    live = run(call(address, "ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse))
    assert live == pb.ServerLiveResponse(live=True)
    meta = run(call(address, "ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse))
    assert isinstance(meta, pb.ServerMetadataResponse)
    assert meta.name == "inferbox" and list(meta.extensions) == ["binary_tensor_data"]
    model = run(
        call(address, "ModelMetadata", pb.ModelMetadataRequest(name="iris"), pb.ModelMetadataResponse)
    )
    assert isinstance(model, pb.ModelMetadataResponse)
    assert model.platform == "sklearn"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [("output-0", "INT64", [-1])]
    ready = run(
        call(address, "ModelReady", pb.ModelReadyRequest(name="iris", version="1"), pb.ModelReadyResponse)
    )
    assert ready == pb.ModelReadyResponse(ready=True)
    for request in (pb.ModelReadyRequest(name="other"), pb.ModelReadyRequest(name="iris", version="2")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            run(call(address, "ModelReady", request, pb.ModelReadyResponse))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_every_output_comes_back_raw_and_ids_are_echoed(grpc_server: GrpcServer) -> None:
    response = infer(grpc_server.address, raw_request(ROWS, id="abc"))
    assert response.id == "abc" and response.model_name == "iris" and response.model_version == "1"
    assert np.frombuffer(response.raw_output_contents[0], dtype="<i8").tolist() == [0, 2, 1]
    assert infer(grpc_server.address, raw_request(ROWS)).id != ""  # a fresh one when absent


def test_typed_integer_contents_are_range_checked(grpc_server: GrpcServer) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="INT8", shape=[1, 4])
    tensor.contents.int_contents.extend([5, 3, 1, 300])
    error = infer_error(grpc_server.address, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "value 300 is out of range for INT8" in str(error.details())
    del tensor.contents.int_contents[:]
    tensor.contents.int_contents.extend([5, 3, 1, 0])
    assert np.frombuffer(infer(grpc_server.address, request).raw_output_contents[0], dtype="<i8").size == 1


@pytest.mark.parametrize(
    ("mutate", "code", "fragment"),
    [
        (lambda r: r.raw_input_contents.append(b"x"), "INVALID_ARGUMENT", "2 entries for 1 inputs"),
        (lambda r: r.inputs[0].shape.__setitem__(0, 2), "INVALID_ARGUMENT", "needs 64 bytes; it has 96"),
        (lambda r: r.inputs[0].shape.__setitem__(0, -3), "INVALID_ARGUMENT", "non-negative"),
        (lambda r: setattr(r.inputs[0], "datatype", "FP32"), "INVALID_ARGUMENT", "needs 48 bytes"),
        (lambda r: setattr(r.inputs[0], "datatype", "FP8"), "INVALID_ARGUMENT", "datatype 'FP8'"),
        (
            lambda r: r.inputs[0].contents.fp64_contents.append(1.0),
            "INVALID_ARGUMENT",
            "uses raw_input_contents",
        ),
        (lambda r: r.outputs.add(name="nope"), "INVALID_ARGUMENT", "unknown output 'nope'"),
        (lambda r: setattr(r, "model_name", "other"), "NOT_FOUND", "model 'other' not found"),
        (lambda r: setattr(r, "model_version", "7"), "NOT_FOUND", "has only version 1"),
    ],
)
def test_bad_infer_requests(grpc_server: GrpcServer, mutate: object, code: str, fragment: str) -> None:
    request = raw_request(ROWS)
    mutate(request)  # type: ignore[operator]
    error = infer_error(grpc_server.address, request)
    assert error.code() == getattr(grpc.StatusCode, code), error
    assert fragment in str(error.details())
    assert len(infer(grpc_server.address, raw_request(ROWS)).raw_output_contents) == 1  # still serving


def test_fp16_must_be_raw(grpc_server: GrpcServer) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="input-0", datatype="FP16", shape=[1, 4])
    error = infer_error(grpc_server.address, request)
    assert "travels only as raw_input_contents" in str(error.details())
    request.raw_input_contents.append(np.array([ROWS[0]], dtype="<f2").tobytes())
    assert len(infer(grpc_server.address, request).raw_output_contents) == 1


def test_grpc_calls_share_the_batcher_stats_and_metrics(grpc_server: GrpcServer) -> None:
    base = grpc_server.server.base_url
    before = httpx.get(f"{base}/inferbox/stats").json()["requests"]

    async def burst() -> list[pb.ModelInferResponse]:
        async with grpc.aio.insecure_channel(grpc_server.address) as channel:
            stub = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            return list(await asyncio.gather(*(stub(raw_request(ROWS)) for _ in range(20))))

    responses = run(burst())
    assert len(responses) == 20  # type: ignore[arg-type]
    assert httpx.get(f"{base}/inferbox/stats").json()["requests"] == before + 20
    metrics = httpx.get(f"{base}/metrics").text
    assert re.search(r'inferbox_requests_total\{endpoint="grpc_infer",status="200"\} \d+', metrics)


def test_a_grpc_port_in_use_is_a_fatal_error(sklearn_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_server_to_exit(
            "--name", "iris", "--framework", "sklearn", "--model-dir", str(sklearn_dir),
            "--port", "0", "--grpc-port", str(port),
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "inferbox-model-server: cannot listen: cannot bind gRPC" in done.stderr
    assert "Traceback" not in done.stderr


def test_grpc_port_out_of_range_is_a_usage_error(sklearn_dir: Path) -> None:
    done = run_server_to_exit(
        "--name", "iris", "--framework", "sklearn", "--model-dir", str(sklearn_dir), "--port", "0",
        "--grpc-port", "70000",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--grpc-port must be between 0 and 65535" in done.stderr


def test_typed_bytes_contents_decode_as_raw_ones_do() -> None:
    """BYTES in typed contents reach the model as raw BYTES do: text when UTF-8, bytes otherwise."""
    from inferbox.server.grpc.tensors import decode_request
    from inferbox.server.model import Model, TensorSpec

    model = Model([TensorSpec("text", "BYTES", (-1,))], [TensorSpec("label", "BYTES", (-1,))])
    model.tabular = False
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
        [b"hi", b"\xff"]
    )
    raw = pb.ModelInferRequest(model_name="m")
    raw.inputs.add(name="text", datatype="BYTES", shape=[2])
    raw.raw_input_contents.append(b"\x02\x00\x00\x00hi\x01\x00\x00\x00\xff")
    for request in (typed, raw):
        x = decode_request(request, model).x
        assert x is not None and x.tolist() == ["hi", b"\xff"]
