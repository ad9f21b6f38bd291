"""The usage history route: a publication's calls over the last hour or day, in time buckets."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.responses import JSONResponse

from inferbox.api.deps import ModelName, Namespace, PlatformDep, PrincipalDep
from inferbox.api.models import load_model
from inferbox.blocking import in_thread
from inferbox.control.usage_history import UsageWindow, history

router = APIRouter(tags=["publishing"])


@router.get(
    "/api/models/{name}/publish/usage",
    summary="A publication's usage over time",
    description="Admitted requests, tokens, and refused calls apart (`unauthorized`: a missing or wrong "
    "key; `rateLimited`: a quota's 429), per minute over the last hour (`window=1h`, 60 buckets) or per "
    "hour over the last day (`window=24h`, 24 buckets), summed over every gateway, with the "
    "publication's limits. Buckets are kept for 25 hours.",
)
async def usage_history(
    name: ModelName,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
    window: UsageWindow = Query("1h", description="1h (per minute) or 24h (per hour)"),
) -> JSONResponse:
    model = await load_model(platform, principal, name, namespace)
    # This process's gateway may hold the last second of calls: count them too.
    await platform.gateway.usage.flush()
    return JSONResponse(await in_thread(history, platform.store, model, window))
