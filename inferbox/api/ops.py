"""Operations routes: health and Prometheus metrics (no authentication, as scrapers and probes expect)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from inferbox import __version__
from inferbox.api.deps import PlatformDep
from inferbox.blocking import in_thread

router = APIRouter(tags=["operations"])


STORE_PING_SECONDS = 5.0


@router.get("/health", summary="Readiness: the store, Redis and the runtime's ownership")
async def health(platform: PlatformDep) -> JSONResponse:
    """200 while this control plane can serve: `healthy`, or `degraded` when Redis is down (the API
    then limits rates in-process; published models answer 503 until it is back). 503 when the store
    cannot be reached or this process lost the local runtime to another owner. `checks` says which."""
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(in_thread(platform.store.ping), STORE_PING_SECONDS)
    except Exception as exc:
        platform.store_health.failed(exc if not isinstance(exc, TimeoutError) else TimeoutError("no answer"))
    else:
        platform.store_health.ok()
    checks["store"] = {**platform.store_health.view(), "dialect": platform.store.dialect}
    limiter = platform.limiter
    if limiter.redis is not None:
        await limiter.ping()
        checks["redis"] = limiter.redis.view()
    lease = platform.lease
    if lease is not None:
        checks["runtime"] = (
            {"status": "up"}
            if lease.held
            else {"status": "down", "error": "another control plane took over the local runtime"}
        )
    body: dict[str, Any] = {
        "status": "healthy",
        "version": __version__,
        "store": platform.store.dialect,
        "runtime": platform.settings.runtime,
        "checks": checks,
    }
    if checks["store"]["status"] != "up" or checks.get("runtime", {}).get("status") == "down":
        failed = "Store unavailable" if checks["store"]["status"] != "up" else "Runtime lost"
        down = next(c for c in checks.values() if c["status"] != "up")
        body.update(status="unhealthy", error=failed, details=down.get("error"))
        return JSONResponse(body, status_code=503)
    if any(c["status"] != "up" for c in checks.values()):
        body["status"] = "degraded"
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(platform: PlatformDep) -> Response:
    body, content_type = platform.metrics.render()
    return Response(body, media_type=content_type)
