"""Operations routes: health and Prometheus metrics (no authentication, as scrapers and probes expect)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from inferbox import __version__
from inferbox.api.deps import PlatformDep

router = APIRouter(tags=["operations"])
log = logging.getLogger("inferbox.health")


@router.get("/health", summary="Liveness and store health")
async def health(platform: PlatformDep) -> JSONResponse:
    try:
        await run_in_threadpool(platform.store.ping)
    except Exception as exc:
        log.warning("health check: store unavailable: %s", exc)
        return JSONResponse(
            {"status": "unhealthy", "error": "Store unavailable", "details": type(exc).__name__},
            status_code=503,
        )
    return JSONResponse(
        {
            "status": "healthy",
            "version": __version__,
            "store": platform.store.dialect,
            "runtime": platform.settings.runtime,
        }
    )


@router.get("/metrics", summary="Prometheus metrics")
def metrics(platform: PlatformDep) -> Response:
    body, content_type = platform.metrics.render()
    return Response(body, media_type=content_type)
