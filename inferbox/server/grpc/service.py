"""KServe's ``inference.GRPCInferenceService`` on a ``grpc.aio`` server, in the replica's event loop.

The handlers are registered under the service's wire name by hand (``grpc.method_handlers_generic_handler``)
rather than through a generated servicer, because our messages live in the proto package
``inferbox.oip`` (see ``oip.proto``) while clients call ``/inference.GRPCInferenceService/...``.

Errors: a request the HTTP server would answer with 400 is ``INVALID_ARGUMENT`` here, 404
``NOT_FOUND``, 413 ``RESOURCE_EXHAUSTED``, 503 ``UNAVAILABLE`` and anything else ``INTERNAL``, each
with the same one-line message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from inferbox.server.batching import Batcher
from inferbox.server.errors import InferenceError, one_line
from inferbox.server.grpc import oip_pb2 as pb
from inferbox.server.grpc.tensors import decode_request, encode_response
from inferbox.server.inference import run_v2
from inferbox.server.metrics import InflightStats
from inferbox.server.model import Model
from inferbox.server.protocol.v2 import EXTENSIONS

logger = logging.getLogger("inferbox.server")

#: The service's full name on the wire, as KServe, Triton and MLServer serve it.
SERVICE = "inference.GRPCInferenceService"

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class GrpcHost(Protocol):
    """What the service needs of the app that serves the model."""

    name: str
    server_version: str
    stats: InflightStats

    async def serving_model(self) -> tuple[Model, Batcher]:
        """The model for an inference call (waiting, bounded, for one still loading)."""

    def ready_model(self) -> tuple[Model, Batcher]:
        """The model if it is loaded; 503 otherwise."""

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count a finished call in the metrics."""


class InferenceService:
    """The six calls of the Open Inference Protocol's gRPC service for one model."""

    def __init__(self, host: GrpcHost) -> None:
        self.host = host

    async def server_live(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._loaded())

    async def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        self._check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self._loaded())

    async def server_metadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="inferbox", version=self.host.server_version, extensions=list(EXTENSIONS)
        )

    async def model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        self._check_model(request.name, request.version)
        model, _ = self.host.ready_model()

        def tensors(specs: Any) -> list[pb.ModelMetadataResponse.TensorMetadata]:
            return [
                pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape))
                for s in specs
            ]

        return pb.ModelMetadataResponse(
            name=self.host.name,
            versions=["1"],
            platform=model.platform,
            inputs=tensors(model.inputs),
            outputs=tensors(model.outputs),
        )

    async def model_infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        self._check_model(request.model_name, request.model_version)
        model, batcher = await self.host.serving_model()
        decoded = decode_request(request, model)
        outputs = await run_v2(model, batcher, decoded, expected=False)
        return encode_response(self.host.name, decoded, model.output_names, outputs)

    def _loaded(self) -> bool:
        try:
            self.host.ready_model()
        except InferenceError:
            return False
        return True

    def _check_model(self, name: str, version: str) -> None:
        if name != self.host.name:
            raise InferenceError(
                404, f"model {name[:200]!r} not found; this server serves {self.host.name!r}"
            )
        if version not in ("", "1"):
            raise InferenceError(404, f"model {self.host.name!r} has only version 1")


def _unary(
    host: GrpcHost,
    endpoint: str,
    call: Callable[[Req], Awaitable[Resp]],
    request_type: type[Req],
    response_type: type[Resp],
    inference: bool,
) -> grpc.RpcMethodHandler[Req, Resp]:
    """A unary handler: runs ``call``, maps an ``InferenceError`` (or a crash) to a status, and
    counts the call in the metrics and, for inference, in the in-flight statistics."""

    async def handle(request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        started = time.perf_counter()
        if inference:
            host.stats.enter()
        status = 200
        try:
            return await call(request)
        except InferenceError as exc:
            status = exc.status
            await context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception as exc:
            status = 500
            logger.exception("grpc %s failed", endpoint)
            await context.abort(grpc.StatusCode.INTERNAL, one_line(exc))
        finally:
            if inference:
                host.stats.leave()
            host.observe_request(endpoint, status, time.perf_counter() - started)
        raise AssertionError("unreachable: abort raises")

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


def generic_handler(host: GrpcHost) -> grpc.GenericRpcHandler:
    """The service's handlers under its wire name."""
    service = InferenceService(host)
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "ServerLive": _unary(
            host, "grpc_live", service.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse, False
        ),
        "ServerReady": _unary(
            host, "grpc_ready", service.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse, False
        ),
        "ModelReady": _unary(
            host, "grpc_model_ready", service.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse, False
        ),
        "ServerMetadata": _unary(
            host,
            "grpc_server_metadata",
            service.server_metadata,
            pb.ServerMetadataRequest,
            pb.ServerMetadataResponse,
            False,
        ),
        "ModelMetadata": _unary(
            host,
            "grpc_model_metadata",
            service.model_metadata,
            pb.ModelMetadataRequest,
            pb.ModelMetadataResponse,
            False,
        ),
        "ModelInfer": _unary(
            host, "grpc_infer", service.model_infer, pb.ModelInferRequest, pb.ModelInferResponse, True
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


async def start_server(host: GrpcHost, address: str, max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
    """Start serving on ``address`` (``host:port``; port 0 lets the OS choose). Returns the server and
    the port it bound. Raises ``OSError`` when the address cannot be bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            # Replicas of one model bind the model's gRPC port together (the kernel spreads
            # connections over them), as their HTTP sockets share one listening socket.
            ("grpc.so_reuseport", 1),
        ]
    )
    server.add_generic_rpc_handlers((generic_handler(host),))
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind to address ...")
        raise OSError(f"cannot bind gRPC to {address}: {exc}") from None
    await server.start()
    return server, port
