"""Builds the control plane's ASGI app from its parts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from inferbox import __version__, console
from inferbox.api import (
    admin,
    auth,
    chat,
    examples,
    extauth,
    frameworks,
    models,
    openapi,
    ops,
    publishing,
    resources,
    tenants,
    usage,
    ws,
)
from inferbox.api.errors import install as install_error_handlers
from inferbox.api.middleware import ApiGuard, BodyLimit, RequestContext
from inferbox.assembly import Platform
from inferbox.blocking import in_thread

log = logging.getLogger("inferbox")

DESCRIPTION = """The Management Service API of inferbox: deploy models, call them, publish them behind API
keys and rate limits. Errors are always `{"error": "...", "details": "..."}`."""


def lifespan_of(platform: Platform) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the parts in order (models, then the gateway, then the lease's renewal), and stop them in
    the reverse order."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        platform.events.bind(asyncio.get_running_loop())
        await platform.models.start()
        await platform.gateway.start()
        keeping = None
        if platform.lease is not None:
            keeping = asyncio.create_task(
                platform.lease.keep(platform.runtime.close, platform.store_health), name="runtime-lease"
            )
        # Everything made at start-up lives as long as the process: keep it out of the collector's
        # sweeps, which would otherwise walk this whole heap on the gateway's hot path.
        gc.freeze()
        try:
            yield
        finally:
            if keeping is not None:
                keeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeping
            await platform.gateway.stop()
            await platform.predictions.close()
            await platform.models.close()
            if platform.lease is not None:
                with contextlib.suppress(Exception):  # a store outage at shutdown: the lease goes stale
                    await in_thread(platform.lease.release)
            platform.audit.close()
            platform.store.close()

    return lifespan


def _add_middleware(app: FastAPI, platform: Platform) -> None:
    # Added last = outermost: CORS answers preflights before anything else runs.
    app.add_middleware(ApiGuard, platform=platform)
    app.add_middleware(BodyLimit, inference_bytes=platform.settings.max_body_bytes)
    app.add_middleware(RequestContext, platform=platform)
    if platform.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(platform.settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "RateLimit",
                "RateLimit-Policy",
                "Retry-After",
            ],
        )


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="inferbox Management Service API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan_of(platform),
    )
    app.state.platform = platform
    install_error_handlers(app, platform.store_health, lambda path: openapi.allowed_methods(app, path))
    routers = [
        m.router
        for m in (
            ops,
            auth,
            tenants,
            models,
            chat,
            frameworks,
            examples,
            publishing,
            extauth,
            usage,
            admin,
            resources,
            ws,
        )
    ]
    for router in routers:
        app.include_router(router)
    console.install(app)
    app.openapi = lambda: openapi.document(app, routers)  # type: ignore[method-assign]
    _add_middleware(app, platform)
    return app
