"""The ASGI app of one model replica: routing, error shape, metrics and in-flight statistics.

A plain ASGI callable with a dict-based router rather than a web framework: the model name is fixed
per replica, so every valid path is known up front and routing is one dict lookup. Only a miss takes
the slow path that works out whether the model name or the route was wrong.

Errors are always ``{"error": "<one line>"}`` with a 4xx/5xx status; nothing a request does escapes
as an unhandled exception (the replica must never die of a request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from inferbox.server.batching import Batcher
from inferbox.server.errors import InferenceError, ModelLoadError, one_line
from inferbox.server.metrics import METRICS_CONTENT_TYPE, InflightStats, Metrics
from inferbox.server.model import Model
from inferbox.server.openai.endpoints import OpenAIEndpoints
from inferbox.server.protocol import dumps
from inferbox.server.rest.endpoints import (
    JSON,
    Headers,
    Receive,
    Response,
    Route,
    Scope,
    Send,
    Streamed,
    error,
)
from inferbox.server.rest.v1_endpoints import V1Endpoints
from inferbox.server.rest.v2_endpoints import V2Endpoints

if TYPE_CHECKING:  # grpc is imported only by a replica that serves it
    import grpc.aio

logger = logging.getLogger("inferbox.server")

_MAX_PATH_IN_ERROR = 200
# How long an inference call that arrives during loading waits for the model before it gets a 503.
LOAD_WAIT_SECONDS = 60.0
# How long gRPC calls in flight may take to finish at shutdown.
GRPC_GRACE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class AppConfig:
    """Everything the app needs to know, from the command line."""

    name: str
    framework: str
    model_path: Path
    max_batch_size: int = 32
    max_batch_wait_ms: float = 2.0
    task: str | None = None
    #: Larger request bodies are refused with 413 instead of being buffered.
    max_body_bytes: int = 32 * 1024 * 1024
    #: Serve the gRPC Open Inference Protocol on this port too (0: one the OS picks); None: no gRPC.
    grpc_port: int | None = None
    grpc_host: str = "127.0.0.1"


def _server_version() -> str:
    try:
        return version("inferbox")
    except PackageNotFoundError:
        return "0.0.0"


class App:
    """The replica's ASGI application. Build it with :func:`build_app`.

    The model is loaded in a background thread when the lifespan starts, so liveness answers at once
    and readiness turns 200 when the model is in. ``load_error`` holds the one-line reason when
    loading failed; ``on_load_error`` (set by the command line) is then called on the event loop, as
    ``on_loaded`` is after a successful load.
    """

    def __init__(self, config: AppConfig, loader: Callable[[], Model]) -> None:
        self.config = config
        self.name = config.name
        self.max_body_bytes = config.max_body_bytes
        self._loader = loader
        self.model: Model | None = None
        self.load_error: str | None = None
        self.on_load_error: Callable[[str], None] | None = None
        self.on_loaded: Callable[[], None] | None = None
        self._batcher: Batcher | None = None
        self.server_version = _server_version()
        self.stats = InflightStats()
        self._stats = self.stats
        self._metrics = Metrics(self._stats)
        self._v1 = V1Endpoints(self)
        self._v2 = V2Endpoints(self, self.server_version)
        self._openai = OpenAIEndpoints(self)
        self._grpc: grpc.aio.Server | None = None
        #: The port gRPC listens on, once the lifespan has started it.
        self.grpc_port: int | None = None
        #: Why the lifespan could not start (the gRPC port could not be bound).
        self.startup_error: str | None = None
        self._loading: asyncio.Future[Model] | None = None
        self._routes = self._build_routes()

    # -- ASGI entry points ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not served; uvicorn closes them when the app returns without accepting

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        route = self._routes.get(scope["path"])
        if route is None:
            route = self._miss(scope["path"], scope["method"])
        inference = route.inference
        status = 500  # what the metrics record if the request is cancelled mid-way
        if inference:
            self._stats.enter()
        try:
            extra: Headers = []
            if scope["method"] != route.method:
                status, body, content_type = error(
                    405, f"method {scope['method']} not allowed; use {route.method}"
                )
                extra = [(b"allow", route.method.encode())]
            else:
                try:
                    answer = await route.handler(scope, receive)
                    if isinstance(answer, Streamed):
                        # Streams handle their own failures: once started, no error status can follow.
                        status = answer.status
                        await _stream(answer, receive, send)
                        return
                    status, body, content_type = answer[:3]
                    if len(answer) == 4:
                        extra = answer[3]
                except InferenceError as exc:
                    status, body, content_type = error(exc.status, exc.message)
                except Exception as exc:
                    logger.exception("%s failed", route.endpoint)
                    status, body, content_type = error(500, one_line(exc))
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", b"%d" % len(body)),
                        *extra,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            if inference:
                self._stats.leave()
            self._metrics.observe_request(route.endpoint, status, time.perf_counter() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start_grpc()
                except OSError as exc:
                    self.startup_error = str(exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._grpc is not None:
                    # HTTP has drained by now (uvicorn shuts the lifespan down last); gRPC calls in
                    # flight get the same grace before the batcher closes under them.
                    await self._grpc.stop(GRPC_GRACE_SECONDS)
                if self._batcher is not None:
                    await self._batcher.close()
                close = getattr(self.model, "close", None)  # language models stop their engine
                if close is not None:
                    close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start_grpc(self) -> None:
        port = self.config.grpc_port
        if port is None:
            return
        from inferbox.server.grpc.service import start_server

        host = self.config.grpc_host
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._grpc, self.grpc_port = await start_server(self, address, self.max_body_bytes)
        logger.info("gRPC on %s", address.rsplit(":", 1)[0] + f":{self.grpc_port}")

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self._metrics.observe_request(endpoint, status, seconds)

    # -- model loading -------------------------------------------------------------------------

    def _start_loading(self) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Model] = loop.create_future()
        self._loading = done

        def work() -> None:
            try:
                started = time.perf_counter()
                model = self._loader()
                model.warm_up()
                logger.info("model %r loaded in %.2f s", self.name, time.perf_counter() - started)
                outcome: tuple[Model | None, BaseException | None] = (model, None)
            except BaseException as exc:
                outcome = (None, exc)
            # RuntimeError: the loop closed while loading (shut down mid-load); nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._loaded, *outcome)

        # A daemon thread rather than the default executor: a shutdown during a long load must not
        # wait for the load to finish.
        threading.Thread(target=work, name="inferbox-load", daemon=True).start()

    def _loaded(self, model: Model | None, exc: BaseException | None) -> None:
        assert self._loading is not None
        if model is None:
            self.load_error = one_line(exc) if exc is not None else "unknown error"
            self._loading.set_exception(ModelLoadError(self.load_error))
            self._loading.exception()  # mark retrieved: the failure is reported through load_error
            if self.on_load_error is not None:
                self.on_load_error(self.load_error)
            return
        self._batcher = Batcher(
            model.predict,
            max_batch_size=self.config.max_batch_size,
            max_batch_wait=self.config.max_batch_wait_ms / 1000.0,
            batchable=model.batchable,
            on_batch=self._metrics.observe_batch,
            # Another inference request in flight means concurrency: batch, never block the loop.
            alone=lambda: self._stats.inflight <= 1,
        )
        self.model = model  # readiness flips here
        self._v2.model_loaded()
        self._loading.set_result(model)
        if self.on_loaded is not None:
            self.on_loaded()

    async def wait_loaded(self) -> Model:
        """Wait for the model load started by the lifespan; raises what the load raised."""
        assert self._loading is not None, "the lifespan has not started"
        return await asyncio.shield(self._loading)

    async def serving_model(self) -> tuple[Model, Batcher]:
        """The model for an inference call. A call that arrives while the model is still loading waits
        for it (bounded), instead of failing: a replica woken from zero by a caller accepts that
        caller's connection before its model is in, and that first call must succeed."""
        if self.model is None and self.load_error is None and self._loading is not None:
            with contextlib.suppress(ModelLoadError, TimeoutError):
                await asyncio.wait_for(self.wait_loaded(), LOAD_WAIT_SECONDS)
        return self.ready_model()

    def ready_model(self) -> tuple[Model, Batcher]:
        model, batcher = self.model, self._batcher
        if model is None or batcher is None:
            if self.load_error is not None:
                raise InferenceError(503, f"model {self.name!r} failed to load: {self.load_error}")
            raise InferenceError(503, f"model {self.name!r} is not ready")
        return model, batcher

    # -- routing -------------------------------------------------------------------------------

    def _build_routes(self) -> dict[str, Route]:
        return {
            **self._v1.routes(),
            **self._v2.routes(),
            **self._openai.routes(),
            "/metrics": Route("metrics", "GET", self._prometheus, False),
            "/inferbox/stats": Route("stats", "GET", self._inferbox_stats, False),
        }

    def _miss(self, path: str, method: str) -> Route:
        """The route for a path that matched nothing: a 404 saying whether the model or the path is
        unknown, whatever the method."""
        message = f"no route for {path[:_MAX_PATH_IN_ERROR]}"
        for prefix in ("/v1/models/", "/v2/models/"):
            if path.startswith(prefix):
                model_name = path[len(prefix) :].split("/", 1)[0]
                if prefix == "/v1/models/":
                    model_name = model_name.split(":", 1)[0]
                if model_name and model_name != self.name:
                    shown = model_name[:_MAX_PATH_IN_ERROR]
                    message = f"model {shown!r} not found; this server serves {self.name!r}"
                elif model_name and "/versions/" in path:
                    message = f"model {self.name!r} has only version 1"

        async def not_found(scope: Scope, receive: Receive) -> Response:
            return error(404, message)

        return Route("not_found", method, not_found, False)

    # -- operations ----------------------------------------------------------------------------

    async def _prometheus(self, scope: Scope, receive: Receive) -> Response:
        return 200, self._metrics.render(), METRICS_CONTENT_TYPE

    async def _inferbox_stats(self, scope: Scope, receive: Receive) -> Response:
        stats = self._stats
        body: dict[str, object] = {
            "inflight": stats.inflight,
            "requests": stats.requests,
            "busySeconds": stats.busy_seconds(),
        }
        engine = getattr(getattr(self.model, "language", None), "engine", None)
        if engine is not None:  # a language model: how many choices its decoding steps carried
            body["generation"] = {
                "steps": engine.steps,
                "stepRows": engine.step_rows,
                "maxStepRows": engine.max_step_rows,
            }
        return 200, dumps(body), JSON


async def _stream(answer: Streamed, receive: Receive, send: Send) -> None:
    """Send a streamed answer chunk by chunk. A watcher reads ``receive`` meanwhile: once the client
    is gone, the chunk producer is closed at its next chunk, which cancels its work."""
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [(b"content-type", answer.content_type), *answer.headers],
        }
    )
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        try:
            async for chunk in answer.chunks:
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception:  # the status is sent: all that is left is to end the body
            logger.exception("stream failed")
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        await answer.chunks.aclose()


def build_app(config: AppConfig, loader: Callable[[], Model] | None = None) -> App:
    """Build the replica's app. ``loader`` loads the model (in a background thread at start-up); by
    default it is the framework loader for ``config.framework`` and ``config.model_path``."""
    if loader is None:
        from inferbox.server.frameworks import load_model

        loader = partial(load_model, config.framework, config.model_path, task=config.task)
    return App(config, loader)
