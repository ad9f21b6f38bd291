"""Model management and prediction routes (the spec's Model Management section)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from inferbox.api.deps import ModelName, Namespace, PlatformDep, PrincipalDep, actor_of
from inferbox.api.errors import ApiError, bad_request, forbidden
from inferbox.api.openapi import json_body
from inferbox.assembly import Platform
from inferbox.auth.principal import Principal
from inferbox.control.models import MAX_SCALE_TARGET
from inferbox.store.tables import Model

router = APIRouter(tags=["models"])

MAX_LOG_LINES = 1000


# Whole numbers only: `true`, `"1"` and `1.0` are not replica counts. Their ranges are checked with the
# spec's wording in control/models.py (the replica cap is a setting).
Count = StrictInt


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, max_length=253, description="DNS-1123 label, at most 45 characters")
    framework: str | None = Field(
        None, max_length=64, description="sklearn, xgboost, lightgbm, onnx, pytorch, huggingface"
    )
    storageUri: str | None = Field(
        None, max_length=2048, description="file:///path, /abs/path, or s3:// gs:// https:// hf:// …"
    )
    minReplicas: Count | None = Field(None, description="0 (scale to zero) up to maxReplicas; default 1")
    maxReplicas: Count | None = Field(None, description="1 up to INFERBOX_MAX_REPLICAS; default 1")
    scaleTarget: Count | None = Field(
        None, description=f"in-flight requests (or rps) per replica, 1 to {MAX_SCALE_TARGET}; default 10"
    )
    scaleMetric: str | None = Field(
        None, max_length=32, description="concurrency or rps (cpu, memory on Kubernetes)"
    )
    namespace: str | None = Field(
        None, max_length=253, description="the tenant; admins must give it, tenants' is their own"
    )


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    framework: str | None = Field(None, max_length=64)
    storageUri: str | None = Field(None, max_length=2048)
    minReplicas: Count | None = None
    maxReplicas: Count | None = None
    scaleTarget: Count | None = None
    scaleMetric: str | None = Field(None, max_length=32)


class ConnectionSettings(BaseModel):
    useCustom: bool = False
    url: str | None = Field(None, description="with useCustom (admin only): the predict URL to call")
    headers: dict[str, str] | None = None


class PredictRequest(BaseModel):
    inputData: Any = Field(
        ..., description="a KServe V1 body ({instances}) or a V2 body ({inputs: [tensors]})"
    )
    connectionSettings: ConnectionSettings | None = None


def write_namespace(principal: Principal, given: str | None, platform: Platform) -> str:
    """Where a new model goes: a tenant's own tenant, whatever it says; the admin must name one."""
    if not principal.is_admin:
        return principal.tenant
    if not given:
        raise bad_request("Field 'namespace' is required when the admin creates a model")
    if not platform.tenants.exists(given):
        raise bad_request(f"Field 'namespace': no tenant named '{given}'")
    return given


def read_namespace(principal: Principal, given: str | None) -> str | None:
    """Where to look: a tenant's own tenant; for the admin `?namespace=` or everywhere."""
    return given if principal.is_admin else principal.tenant


async def load_model(platform: Platform, principal: Principal, name: str, namespace: str | None) -> Model:
    """The caller's model `name` (404 for another tenant's): from the service's cache when it has
    it, else from the store in a worker thread."""
    scope = read_namespace(principal, namespace)
    if scope is not None and (row := platform.models.cached(scope, name)) is not None:
        return row
    return await run_in_threadpool(platform.models.find, scope, name)


@router.get("/api/models", summary="List models")
def list_models(principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None) -> JSONResponse:
    return JSONResponse({"models": platform.models.list(read_namespace(principal, namespace))})


@router.post("/api/models", status_code=201, summary="Create a model")
async def create_model(
    body: ModelCreate, request: Request, principal: PrincipalDep, platform: PlatformDep
) -> JSONResponse:
    namespace = write_namespace(principal, body.namespace, platform)
    fields = body.model_dump(exclude_unset=True, exclude={"namespace"})
    result = await platform.models.create(
        namespace, fields, actor_of(principal, request), restricted=not principal.is_admin
    )
    return JSONResponse(result, status_code=201)


@router.get("/api/models/{name}", summary="Get a model")
async def get_model(
    name: ModelName, principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None
) -> JSONResponse:
    row = await load_model(platform, principal, name, namespace)
    return JSONResponse(platform.models.view(row))


@router.put("/api/models/{name}", summary="Update a model (partial)")
async def update_model(
    name: ModelName,
    body: ModelUpdate,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    row = await load_model(platform, principal, name, namespace)
    patch = body.model_dump(exclude_unset=True)
    if not patch:
        raise bad_request("The body names no field to update")
    result = await platform.models.update(
        row, patch, actor_of(principal, request), restricted=not principal.is_admin
    )
    return JSONResponse(result)


@router.delete("/api/models/{name}", summary="Delete a model")
async def delete_model(
    name: ModelName,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    row = await load_model(platform, principal, name, namespace)
    await platform.models.delete(row, actor_of(principal, request))
    return JSONResponse({"message": "Model deleted successfully"})


def _model_error(status: int, content: bytes) -> ApiError:
    try:
        message = orjson.loads(content).get("error") or content.decode(errors="replace")
    except (orjson.JSONDecodeError, AttributeError):
        message = content.decode(errors="replace")[:500]
    if status == 400:
        return ApiError(400, "Invalid prediction input", str(message))
    if status == 404:
        return ApiError(404, "Model not found", str(message))
    return ApiError(502, "Prediction failed", f"The model answered {status}: {message}")


# Bodies larger than this are parsed in a worker thread: the gateway of `inferbox serve` answers from the
# same event loop, and a 32 MiB JSON document takes the loop away for a tenth of a second.
INLINE_PARSE_BYTES = 256 * 1024


async def _predict_body(request: Request) -> PredictRequest:
    raw = await request.body()
    try:
        if len(raw) > INLINE_PARSE_BYTES:
            data = await run_in_threadpool(orjson.loads, raw)
        else:
            data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("Request body must be valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object")
    try:
        return PredictRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


@router.post(
    "/api/models/{name}/predict",
    summary="Call a model (V1 or V2 body, chosen by its shape)",
    openapi_extra=json_body(PredictRequest),
)
async def predict(
    name: ModelName,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> Response:
    body = await _predict_body(request)
    service = platform.models
    settings = body.connectionSettings
    if settings is not None and settings.useCustom:
        if not principal.is_admin:
            raise forbidden("Admin access required", "connectionSettings.useCustom is for the admin only")
        if not settings.url:
            raise bad_request("Field 'connectionSettings.url' is required with useCustom")
        status, content = await service.predict_custom(settings.url, body.inputData, settings.headers or {})
    else:
        row = await load_model(platform, principal, name, namespace)
        status, content = await service.predict(row, body.inputData)
    if status >= 400:
        raise _model_error(status, content)
    return Response(content, status_code=status, media_type="application/json")


@router.get("/api/models/{name}/logs", summary="Recent output of the model's replicas")
async def model_logs(
    name: ModelName,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
    lines: int = Query(100, ge=1, description=f"how many lines (at most {MAX_LOG_LINES})"),
) -> JSONResponse:
    row = await load_model(platform, principal, name, namespace)
    text = await platform.models.logs(row, min(lines, MAX_LOG_LINES))
    return JSONResponse({"name": row.name, "namespace": row.namespace, "lines": text})
