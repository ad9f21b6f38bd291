"""The Open Inference Protocol (V2): server metadata, liveness and readiness, model metadata and
readiness, and `POST /v2/models/{name}[/versions/1]/infer` with tensors."""

from __future__ import annotations

from inferbox.server.inference import run_v2
from inferbox.server.protocol import dumps, v2
from inferbox.server.rest.endpoints import (
    JSON,
    OCTET_STREAM,
    ModelHost,
    Receive,
    Response,
    Route,
    Scope,
    header,
    read_body,
)

#: The binary tensor extension's header: the length of the JSON part of a request or response body.
HEADER_LENGTH = b"inference-header-content-length"


class V2Endpoints:
    def __init__(self, host: ModelHost, server_version: str) -> None:
        self.host = host
        self._server_metadata = v2.server_metadata(server_version)
        self._model_metadata = b""

    def model_loaded(self) -> None:
        """The model is in: its metadata is built once, here."""
        model, _ = self.host.ready_model()
        self._model_metadata = v2.model_metadata(self.host.name, model)

    def routes(self) -> dict[str, Route]:
        name = self.host.name
        routes = {
            "/v2": Route("v2_server_metadata", "GET", self.server_metadata, False),
            "/v2/health/live": Route("v2_live", "GET", self.live, False),
            "/v2/health/ready": Route("v2_ready", "GET", self.ready, False),
        }
        # The only model version is "1"; the versioned paths are the same endpoints.
        for prefix in (f"/v2/models/{name}", f"/v2/models/{name}/versions/1"):
            routes[prefix] = Route("v2_model_metadata", "GET", self.model_metadata, False)
            routes[f"{prefix}/ready"] = Route("v2_model_ready", "GET", self.model_ready, False)
            routes[f"{prefix}/infer"] = Route("v2_infer", "POST", self.infer, True)
        return routes

    async def server_metadata(self, scope: Scope, receive: Receive) -> Response:
        return 200, self._server_metadata, JSON

    async def live(self, scope: Scope, receive: Receive) -> Response:
        return 200, b'{"live":true}', JSON

    async def ready(self, scope: Scope, receive: Receive) -> Response:
        self.host.ready_model()
        return 200, b'{"ready":true}', JSON

    async def model_metadata(self, scope: Scope, receive: Receive) -> Response:
        self.host.ready_model()
        return 200, self._model_metadata, JSON

    async def model_ready(self, scope: Scope, receive: Receive) -> Response:
        self.host.ready_model()
        return 200, dumps({"name": self.host.name, "ready": True}), JSON

    async def infer(self, scope: Scope, receive: Receive) -> Response:
        model, batcher = await self.host.serving_model()
        batcher.expect()
        try:
            body = await read_body(scope, receive, self.host.max_body_bytes)
            request = v2.decode(body, model, header(scope, HEADER_LENGTH))
        except BaseException:
            batcher.forget()
            raise
        outputs = await run_v2(model, batcher, request, expected=True)
        body, header_length = v2.encode(self.host.name, request, model.output_names, outputs)
        if header_length is None:
            return 200, body, JSON
        return 200, body, OCTET_STREAM, [(HEADER_LENGTH, b"%d" % header_length)]
