"""KServe's V1 protocol: liveness `GET /`, `GET /v1/models`, `GET /v1/models/{name}` (readiness) and
`POST /v1/models/{name}:predict` with `{"instances": [...]}`."""

from __future__ import annotations

from inferbox.server.protocol import dumps, v1
from inferbox.server.rest.endpoints import (
    JSON,
    ModelHost,
    Receive,
    Response,
    Route,
    Scope,
    read_body,
    run_framework,
)


class V1Endpoints:
    def __init__(self, host: ModelHost) -> None:
        self.host = host

    def routes(self) -> dict[str, Route]:
        name = self.host.name
        return {
            "/": Route("v1_live", "GET", self.live, False),
            "/v1/models": Route("v1_models", "GET", self.models, False),
            f"/v1/models/{name}": Route("v1_model_ready", "GET", self.model_ready, False),
            f"/v1/models/{name}:predict": Route("v1_predict", "POST", self.predict, True),
        }

    async def live(self, scope: Scope, receive: Receive) -> Response:
        # KServe's model server answers its liveness probe this way, before and after loading.
        return 200, b'{"status":"alive"}', JSON

    async def models(self, scope: Scope, receive: Receive) -> Response:
        return 200, dumps({"models": [self.host.name]}), JSON

    async def model_ready(self, scope: Scope, receive: Receive) -> Response:
        self.host.ready_model()
        return 200, dumps({"name": self.host.name, "ready": True}), JSON

    async def predict(self, scope: Scope, receive: Receive) -> Response:
        model, batcher = await self.host.serving_model()
        batcher.expect()
        try:
            x = v1.decode(await read_body(scope, receive, self.host.max_body_bytes), model)
        except BaseException:
            batcher.forget()
            raise
        outputs = await run_framework(model, batcher.predict(x, expected=True))
        return 200, v1.encode(outputs[0]), JSON
