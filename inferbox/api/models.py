"""Model management and prediction routes (the spec's Model Management section).

The bodies are typed from the model's one definition (`ModelConfig`): a create is its fields with a
name and a namespace, an update any of them."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic import create_model as derived_model
from pydantic.fields import FieldInfo
from starlette.responses import JSONResponse, Response

from inferbox.api.bodies import validated_body
from inferbox.api.deps import (
    ModelName,
    Namespace,
    PlatformDep,
    PrincipalDep,
    actor_of,
    check_tenant_scope,
)
from inferbox.api.errors import ApiError, bad_request, forbidden
from inferbox.api.openapi import json_body
from inferbox.assembly import Platform
from inferbox.auth.principal import Principal
from inferbox.blocking import in_thread
from inferbox.control.model_config import MAX_NAME, ModelConfig
from inferbox.control.model_rows import ModelRecord
from inferbox.control.validation import field_error
from inferbox.logs import MAX_LOG_LINES

router = APIRouter(tags=["models"])


class ModelCreate(ModelConfig):
    name: str = Field(max_length=253, description=f"a DNS-1123 label, at most {MAX_NAME} characters")
    namespace: str | None = Field(
        None,
        max_length=253,
        description="the tenant; the admin must give it; a tenant may give only its own (another: 403)",
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


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._:-]+)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")


def _port(value: Any) -> Any:
    """A port as a number, or as the digits a web form's text field sends; "" means none."""
    if value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        return int(value)
    return value


# The range applies to a number only: null (or "") is no port.
Port = Annotated[Annotated[StrictInt, Field(ge=1, le=65535)] | None, BeforeValidator(_port)]


class HeaderEntry(BaseModel):
    """One header as the web UI lists them; an entry with an empty key is a blank row and is skipped."""

    key: str = Field(max_length=256)
    value: str = Field(max_length=8192)


class DnsOverride(BaseModel):
    """Connect to `address` for `host` (and `port`, if given), as `curl --resolve host:port:address`."""

    host: str = Field(min_length=1, max_length=253)
    port: Port = None
    address: str = Field(min_length=1, max_length=64, description="an IP address")

    @field_validator("address")
    @classmethod
    def _ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            raise field_error("must be an IP address") from None


class ConnectionSettings(BaseModel):
    """Where predict sends the body. With `useCustom` (admin only) an endpoint of the admin's choice,
    given as a `url`, or as the web UI's parts (`protocol`, `host`, `port`, `path`); either way it
    passes the outbound guard (no link-local or cloud-metadata address, whatever the name resolves to)."""

    useCustom: bool = False
    url: str | None = Field(
        None, max_length=2048, description="with useCustom (admin only): the predict URL to call"
    )
    protocol: Literal["http", "https"] | None = Field(None, description="with host, instead of url")
    host: str | None = Field(None, max_length=253)
    port: Port = None
    path: str | None = Field(None, max_length=2048, description="e.g. /v1/models/my-model:predict")
    headers: dict[str, Annotated[str, Field(max_length=8192)]] | list[HeaderEntry] | None = Field(
        None, description='{"Name": "value"}, or the web UI\'s [{"key", "value"}]'
    )
    dnsResolve: list[DnsOverride] = Field(default_factory=list, max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, data: Any) -> Any:
        # The web UI sends "" for the parts it leaves empty.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v == "" and k in ("url", "host", "path"))}
        return data

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        # A name or an address only: '/', '@', '#' or '?' would make the parts a different URL.
        if value is not None and not _HOST.match(value):
            raise field_error("must be a host name or an IP address")
        return value

    def target(self) -> str | None:
        """The URL to call: `url`, or the one the parts make (None when neither is given)."""
        if self.url:
            return self.url
        if not self.host:
            return None
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        port = f":{self.port}" if self.port else ""
        path = self.path or "/"
        return f"{self.protocol or 'http'}://{host}{port}{path if path.startswith('/') else '/' + path}"

    def header_map(self) -> dict[str, str]:
        """The headers to send; InvalidField for a name or value HTTP cannot carry."""
        if isinstance(self.headers, dict):
            pairs = list(self.headers.items())
        else:
            pairs = [(h.key.strip(), h.value) for h in self.headers or [] if h.key.strip()]
        for name, value in pairs:
            if not _HEADER_NAME.match(name):
                raise bad_request(f"Field 'connectionSettings.headers': '{name[:64]}' is not a header name")
            if any(c in value for c in "\r\n\0"):
                raise bad_request(f"Field 'connectionSettings.headers': the value of '{name}' breaks a line")
            if not value.isascii():
                # HTTP/1.1 header values are bytes; only ASCII is sent the same by every client.
                raise bad_request(f"Field 'connectionSettings.headers': the value of '{name}' must be ASCII")
        return dict(pairs)


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
    body: ModelCreate,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> JSONResponse:
    """The tenant is the body's `namespace` (or `?namespace=`, checked like every route's)."""
    check_tenant_scope(principal, body.namespace, "namespace", request, platform)
    namespace = await write_namespace(principal, body.namespace or namespace, platform)
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
    patch = {**body.model_dump(exclude_unset=True), **(body.model_extra or {})}
    named = patch.get("namespace")
    check_tenant_scope(principal, named if isinstance(named, str) else None, "namespace", request, platform)
    record = await load_model(platform, principal, name, namespace)
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
    body = await validated_body(request, PredictRequest)
    predictor = platform.predictions
    settings = body.connectionSettings
    if settings is not None and settings.useCustom:
        if not principal.is_admin:
            raise forbidden("Admin access required", "connectionSettings.useCustom is for the admin only")
        url = settings.target()
        if not url:
            raise bad_request("Field 'connectionSettings.url' (or 'host') is required with useCustom")
        resolve = [(d.host, d.port, d.address) for d in settings.dnsResolve]
        status, content = await predictor.predict_custom(url, body.inputData, settings.header_map(), resolve)
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
    # `logs` is the original web UI's name for the same lines.
    return JSONResponse({"name": record.name, "namespace": record.namespace, "lines": text, "logs": text})
