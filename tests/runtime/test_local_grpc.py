"""The local runtime gives a model's replicas one gRPC port and reports it in the model's status."""

from __future__ import annotations

import asyncio
import socket

import grpc
import grpc.aio
import numpy as np
import pytest

from inferbox.runtime.base import ModelSpec
from inferbox.server.grpc import oip_pb2 as pb

pytestmark = pytest.mark.anyio

NS = "tenant-a"


async def model_infer(port: int, rows: list[list[float]]) -> list[int]:
    """One ModelInfer on a fresh connection (so that the kernel picks a replica for each call)."""
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="input-0", datatype="FP64", shape=[len(rows), 4])
    request.raw_input_contents.append(np.array(rows, dtype="<f8").tobytes())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response = await stub(request, timeout=10)
    return np.frombuffer(response.raw_output_contents[0], dtype="<i8").tolist()


@pytest.mark.timeout(90)
async def test_replicas_share_the_reported_grpc_port(make_runtime, svc, wait_for) -> None:
    runtime = await make_runtime()
    status = await runtime.apply(
        ModelSpec(NS, "iris", "sklearn", str(svc.model_dir), min_replicas=2, max_replicas=2)
    )
    port = status.grpc_port
    assert isinstance(port, int) and port not in (0, status.port)
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 2, 60, "two ready replicas")
    assert runtime.status(NS, "iris").grpc_port == port

    # The port is held for the model: a plain bind is refused while it lives.
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", port))

    results = await asyncio.gather(*(model_infer(port, svc.instances) for _ in range(10)))
    assert results == [svc.expected] * 10

    await runtime.delete(NS, "iris")
    await wait_for(lambda: runtime.status(NS, "iris") is None, 30, "the model gone")
    with socket.socket() as again:  # released with the model
        again.bind(("127.0.0.1", port))
