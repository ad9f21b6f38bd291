"""Builds the control plane's ASGI app from its parts."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from inferbox import __version__
from inferbox.api import admin, auth, events, models, ops, publishing, tenants
from inferbox.api.middleware import ApiGuard, RequestContext
from inferbox.errors import install as install_error_handlers
from inferbox.platform import Platform

log = logging.getLogger("inferbox")

DESCRIPTION = """The Management Service API of inferbox: deploy models, call them, publish them behind API
keys and rate limits. Errors are always `{"error": "...", "details": "..."}`."""


def create_app(platform: Platform) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        platform.events.bind(asyncio.get_running_loop())
        await platform.models.start()
        await platform.gateway.start()
        # Everything made at start-up lives as long as the process: keep it out of the collector's
        # sweeps, which would otherwise walk this whole heap on the gateway's hot path.
        gc.freeze()
        try:
            yield
        finally:
            await platform.gateway.stop()
            await platform.models.close()
            platform.audit.close()
            platform.store.close()

    app = FastAPI(
        title="inferbox Management Service API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_error_handlers(app)
    for module in (ops, auth, tenants, models, publishing, admin, events):
        app.include_router(module.router)
    # Added last = outermost: CORS answers preflights before anything else runs.
    app.add_middleware(ApiGuard, platform=platform)
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
    return app
