"""Model management and prediction routes (the spec's Model Management section).

The bodies are typed from the model's one definition (`ModelConfig`): a create is its fields with a
name and a namespace, an update any of them."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic import create_model as derived_model
from pydantic.fields import FieldInfo
from starlette.responses import JSONResponse, Response

from inferbox.api.deps import ModelName, Namespace, PlatformDep, PrincipalDep, actor_of
from inferbox.api.errors import ApiError, bad_request, forbidden
from inferbox.api.openapi import json_body
from inferbox.assembly import Platform
from inferbox.auth.principal import Principal
from inferbox.blocking import in_thread
from inferbox.control.model_config import MAX_NAME, ModelConfig
from inferbox.control.model_rows import ModelRecord
from inferbox.logs import MAX_LOG_LINES

router = APIRouter(tags=["models"])


class ModelCreate(ModelConfig):
    name: str = Field(max_length=253, description=f"a DNS-1123 label, at most {MAX_NAME} characters")
    namespace: str | None = Field(
        None, max_length=253, description="the tenant; admins must give it, tenants' is their own"
    )


def _optional(field: FieldInfo) -> Any:
    """A field's type and constraints, or null."""
    kind: Any = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return kind | None


# Any of the config's fields, none required (the control plane merges them over the model's).
ModelUpdate = derived_model(
    "ModelUpdate",
    __config__=ConfigDict(extra="allow"),
    **{  # type: ignore[call-overload]
        field.alias or name: (_optional(field), Field(None, description=field.description))
        for name, field in ModelConfig.model_fields.items()
    },
)


class ConnectionSettings(BaseModel):
    useCustom: bool = False
    url: str | None = Field(None, description="with useCustom (admin only): the predict URL to call")
    headers: dict[str, str] | None = None


class PredictRequest(BaseModel):
    inputData: Any = Field(
        ..., description="a KServe V1 body ({instances}) or a V2 body ({inputs: [tensors]})"
    )
    connectionSettings: ConnectionSettings | None = None


async def write_namespace(principal: Principal, given: str | None, platform: Platform) -> str:
    """Where a new model goes: a tenant's own tenant, whatever it says; the admin must name one."""
    if not principal.is_admin:
        return principal.tenant
    if not given:
        raise bad_request("Field 'namespace' is required when the admin creates a model")
    if not await platform.tenants.exists_async(given):
        raise bad_request(f"Field 'namespace': no tenant named '{given}'")
    return given


def read_namespace(principal: Principal, given: str | None) -> str | None:
    """Where to look: a tenant's own tenant; for the admin `?namespace=` or everywhere."""
    return given if principal.is_admin else principal.tenant


async def load_model(
    platform: Platform, principal: Principal, name: str, namespace: str | None
) -> ModelRecord:
    """The caller's model `name` (404 for another tenant's): from the service's cache when it has
    it, else from the store in a worker thread."""
    scope = read_namespace(principal, namespace)
    if scope is not None and (record := platform.models.rows.cached(scope, name)) is not None:
        return record
    return await in_thread(platform.models.rows.find, scope, name)


@router.get("/api/models", summary="List models")
async def list_models(
    principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None
) -> JSONResponse:
    models = await in_thread(platform.models.views, read_namespace(principal, namespace))
    return JSONResponse({"models": models})


@router.post("/api/models", status_code=201, summary="Create a model")
async def create_model(
    body: ModelCreate, request: Request, principal: PrincipalDep, platform: PlatformDep
) -> JSONResponse:
    namespace = await write_namespace(principal, body.namespace, platform)
    result = await platform.models.create(
        namespace, body.name, body, actor_of(principal, request), restricted=not principal.is_admin
    )
    return JSONResponse(result, status_code=201)


@router.get("/api/models/{name}", summary="Get a model")
async def get_model(
    name: ModelName, principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None
) -> JSONResponse:
    record = await load_model(platform, principal, name, namespace)
    return JSONResponse(platform.models.view(record))


@router.put("/api/models/{name}", summary="Update a model (partial)")
async def update_model(
    name: ModelName,
    body: ModelUpdate,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    record = await load_model(platform, principal, name, namespace)
    patch = {**body.model_dump(exclude_unset=True), **(body.model_extra or {})}
    result = await platform.models.update(
        record, patch, actor_of(principal, request), restricted=not principal.is_admin
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
    record = await load_model(platform, principal, name, namespace)
    await platform.models.delete(record, actor_of(principal, request))
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
        data = await in_thread(orjson.loads, raw) if len(raw) > INLINE_PARSE_BYTES else orjson.loads(raw)
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
    predictor = platform.predictions
    settings = body.connectionSettings
    if settings is not None and settings.useCustom:
        if not principal.is_admin:
            raise forbidden("Admin access required", "connectionSettings.useCustom is for the admin only")
        if not settings.url:
            raise bad_request("Field 'connectionSettings.url' is required with useCustom")
        status, content = await predictor.predict_custom(settings.url, body.inputData, settings.headers or {})
    else:
        record = await load_model(platform, principal, name, namespace)
        status, content = await predictor.predict(record, body.inputData)
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
    record = await load_model(platform, principal, name, namespace)
    text = await platform.models.logs(record, min(lines, MAX_LOG_LINES))
    return JSONResponse({"name": record.name, "namespace": record.namespace, "lines": text})
