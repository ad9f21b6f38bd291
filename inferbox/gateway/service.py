"""Runs a gateway: its HTTP server on the gateway port, and its background work (route reloads for
changes made by other processes, usage flushes). Used inside `inferbox serve` and by `inferbox gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from inferbox.auth.tokens import TokenService
from inferbox.blocking import in_thread
from inferbox.config import Settings
from inferbox.control.tenants import TenantDirectory
from inferbox.gateway.app import Gateway
from inferbox.gateway.routes import RouteTable
from inferbox.gateway.upstream import Upstream
from inferbox.gateway.usage import UsageRecorder
from inferbox.health import Dependency
from inferbox.ratelimit import Limiter
from inferbox.store import Store

log = logging.getLogger("inferbox.gateway")

RELOAD_SECONDS = 1.0
FLUSH_SECONDS = 1.0


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host: the process's main server handles them and
    stops this one from its own shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GatewayService:
    def __init__(
        self,
        store: Store,
        limiter: Limiter,
        tokens: TokenService,
        tenants: TenantDirectory,
        upstream: Upstream,
        *,
        settings: Settings,
        store_health: Dependency | None = None,
    ) -> None:
        self.store_health = store_health or Dependency("the store")
        self.routes = RouteTable(store)
        self.usage = UsageRecorder(store, self.store_health)
        self.app = Gateway(
            self.routes,
            limiter,
            self.usage,
            tokens,
            tenants,
            upstream,
            max_body_bytes=settings.max_body_bytes,
            store_health=self.store_health,
        )
        self.settings = settings
        self.host, self.port = settings.host, settings.gateway_port
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await in_thread(self.routes.reload)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            lifespan="off",
            ws="none",
            http="httptools",
            loop="none",
            **self.settings.server_options(),
        )
        self._server = _EmbeddedServer(config)
        self._tasks = [
            asyncio.create_task(self._server.serve(), name="gateway-server"),
            asyncio.create_task(self._reload_loop(), name="gateway-routes"),
            asyncio.create_task(self.usage.run(FLUSH_SECONDS), name="gateway-usage"),
        ]
        while not self._server.started:
            if self._tasks[0].done():
                self._tasks[0].result()  # raises why the server could not start (port taken, …)
                raise RuntimeError(f"gateway could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        log.info("gateway listening on %s:%d", self.host, self.port)

    async def _reload_loop(self) -> None:
        """Changes made by other processes arrive here. While the store is down the gateway keeps
        serving the routes and keys it has (and says so in /health)."""
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            try:
                await in_thread(self.routes.reload)
            except Exception as exc:
                self.store_health.failed(exc)
            else:
                self.store_health.ok()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        server_task = self._tasks[0] if self._tasks else None
        loops = self._tasks[1:]
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await server_task
        await self.usage.flush()
        await self.app.aclose()
