"""Publishing routes (the spec's Model Publishing section) and API key validation."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from inferbox.api.deps import (
    ModelName,
    Namespace,
    PlatformDep,
    PrincipalDep,
    actor_of,
    check_tenant_scope,
)
from inferbox.api.errors import bad_request
from inferbox.api.models import load_model
from inferbox.api.openapi import json_body
from inferbox.assembly import Platform
from inferbox.auth.principal import Principal
from inferbox.blocking import in_thread
from inferbox.control.publish_config import PublishConfig
from inferbox.timefmt import now

router = APIRouter(tags=["publishing"])


class PublishRequest(BaseModel):
    config: PublishConfig = Field(default_factory=PublishConfig, description="every field may be left out")


class UpdateRequest(BaseModel):
    config: PublishConfig = Field(description="the fields to change; the others keep their values")


def _patch(config: PublishConfig) -> dict[str, Any]:
    """The fields a request set (nested ones too), by the spec's names."""
    return config.model_dump(exclude_unset=True)


def _namespace(principal: Principal, query: str | None, config: PublishConfig | None = None) -> str | None:
    """A tenant acts in its own tenant; the admin names one with ?namespace= or config.tenantId."""
    if not principal.is_admin:
        return principal.tenant
    return query or (config.tenantId if config is not None else None) or None


async def _flush_usage(platform: Platform) -> None:
    """Views count every admitted call: add what the gateway in this process has not written yet."""
    await platform.gateway.usage.flush()


@router.post("/api/models/{name}/publish", status_code=201, summary="Publish a model")
async def publish(
    name: ModelName,
    body: PublishRequest,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    check_tenant_scope(principal, body.config.tenantId, "config.tenantId", request, platform)
    model = await load_model(platform, principal, name, _namespace(principal, namespace, body.config))
    example = await platform.predictions.input_example(model)
    result = await in_thread(
        platform.publishing.publish, model, _patch(body.config), actor_of(principal, request), example
    )
    return JSONResponse(result, status_code=201)


@router.put("/api/models/{name}/publish", summary="Update a publication")
async def update_publication(
    name: ModelName,
    body: UpdateRequest,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    check_tenant_scope(principal, body.config.tenantId, "config.tenantId", request, platform)
    model = await load_model(platform, principal, name, _namespace(principal, namespace, body.config))
    await _flush_usage(platform)
    result = await in_thread(
        platform.publishing.update, model, _patch(body.config), actor_of(principal, request)
    )
    return JSONResponse(result)


@router.get("/api/models/{name}/publish", summary="Get a publication")
async def get_publication(
    name: ModelName, principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None
) -> JSONResponse:
    model = await load_model(platform, principal, name, _namespace(principal, namespace))
    await _flush_usage(platform)
    return JSONResponse(await in_thread(platform.publishing.get, model))


@router.delete("/api/models/{name}/publish", summary="Unpublish a model")
async def unpublish(
    name: ModelName,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    model = await load_model(platform, principal, name, _namespace(principal, namespace))
    await in_thread(platform.publishing.unpublish, model, actor_of(principal, request))
    return JSONResponse({"message": "Model unpublished successfully"})


@router.post("/api/models/{name}/publish/rotate-key", summary="Rotate a publication's API key")
async def rotate_key(
    name: ModelName,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
    gracePeriodSeconds: int = Query(
        0, description="how long the old key keeps working (default: not at all)"
    ),
) -> JSONResponse:
    model = await load_model(platform, principal, name, _namespace(principal, namespace))
    result = await in_thread(
        platform.publishing.rotate, model, gracePeriodSeconds, actor_of(principal, request)
    )
    return JSONResponse(result)


@router.get("/api/published-models", summary="List publications")
async def list_publications(
    principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None
) -> JSONResponse:
    await _flush_usage(platform)
    scope = namespace if principal.is_admin else principal.tenant
    items = await in_thread(platform.publishing.list, scope)
    return JSONResponse({"publishedModels": items, "total": len(items)})


class ValidateKeyRequest(BaseModel):
    apiKey: str = Field(max_length=256, description="the key to check (or send it in X-API-Key)")


class ValidateKeyResponse(BaseModel):
    valid: bool
    tenant: str
    model: str


@router.post(
    "/api/validate-api-key",
    summary="Validate an API key (for gateways)",
    response_model=ValidateKeyResponse,
    openapi_extra=json_body(ValidateKeyRequest, required=False),
)
async def validate_api_key(
    platform: PlatformDep,
    request: Request,
    x_api_key: str | None = Header(None, max_length=256),
) -> JSONResponse:
    """Takes `{"apiKey"}` or an `X-API-Key` header. Needs no bearer token: the key is the credential.
    Guessing is bounded by the API's per-address rate limit. The body (at most 4 KiB) is parsed with
    orjson, which refuses nesting deeper than 1024 levels instead of recursing."""
    key = x_api_key
    if not key:
        raw = await request.body()
        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise bad_request("Request body must be valid JSON") from None
        if not isinstance(data, dict):
            raise bad_request("Request body must be a JSON object")
        given = data.get("apiKey")
        key = given if isinstance(given, str) else None
    # The gateway's route table holds every key's hash and is reloaded on every change made here, so
    # validation needs no store round trip.
    route = platform.gateway.routes.find_key(key, now()) if key else None
    if route is None:
        details = "The key is wrong, revoked, or expired"
        return JSONResponse({"valid": False, "error": "Invalid API key", "details": details}, status_code=401)
    return JSONResponse({"valid": True, "tenant": route.namespace, "model": route.model})
