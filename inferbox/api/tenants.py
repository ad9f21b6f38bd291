"""Tenant administration (admin only)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from inferbox.api.deps import AdminDep, PlatformDep, actor_of
from inferbox.api.errors import ApiError
from inferbox.blocking import in_thread
from inferbox.control.audit import SUCCESS
from inferbox.control.tenants import TenantView
from inferbox.timefmt import iso

# A minted token lives from a minute to the longest INFERBOX_TOKEN_TTL_SECONDS allows.
MIN_TOKEN_TTL = 60
MAX_TOKEN_TTL = 30 * 86400

router = APIRouter(tags=["admin"])


class TenantOut(BaseModel):
    name: str
    status: str
    created: str


class TenantList(BaseModel):
    tenants: list[TenantOut]


class TenantCreate(BaseModel):
    # The rule is checked by control/tenants.py (for its wording); the schema states it for clients.
    name: str = Field(
        max_length=253,
        description="a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters",
        examples=["tenant-a"],
        json_schema_extra={"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    )


def _out(tenant: TenantView) -> TenantOut:
    return TenantOut(name=tenant.name, status=tenant.status, created=iso(tenant.created) or "")


@router.get("/api/admin/tenants", response_model=TenantList, summary="List tenants")
async def list_tenants(_admin: AdminDep, platform: PlatformDep) -> TenantList:
    return TenantList(tenants=[_out(t) for t in await in_thread(platform.tenants.list)])


@router.post("/api/admin/tenants", status_code=201, response_model=TenantOut, summary="Create a tenant")
async def create_tenant(
    body: TenantCreate, request: Request, admin: AdminDep, platform: PlatformDep
) -> TenantOut:
    return _out(await in_thread(platform.tenant_admin.create, body.name, actor_of(admin, request)))


@router.delete("/api/admin/tenants/{name}", summary="Delete a tenant")
async def delete_tenant(
    name: str,
    request: Request,
    admin: AdminDep,
    platform: PlatformDep,
    force: bool = Query(False, description="Also delete the tenant's models"),
) -> JSONResponse:
    await platform.tenant_admin.delete(name, actor_of(admin, request), force=force)
    return JSONResponse({"message": "Tenant deleted successfully", "name": name})


class TokenRequest(BaseModel):
    ttlSeconds: int | None = Field(
        None,
        ge=MIN_TOKEN_TTL,
        le=MAX_TOKEN_TTL,
        description=f"how long the token is valid, {MIN_TOKEN_TTL} s to {MAX_TOKEN_TTL} s (30 days); "
        "default INFERBOX_TOKEN_TTL_SECONDS",
        examples=[3600],
    )


class TokenOut(BaseModel):
    token: str
    tenant: str
    subject: str
    expiresAt: str = Field(description="RFC 3339, UTC")


@router.post(
    "/api/admin/tenants/{name}/token",
    response_model=TokenOut,
    summary="Mint a token for a user of a tenant",
    description="For the console's sign-in as a tenant, and for scripts. Audited as `tenant.tokenIssued` "
    "(never the token itself). An unknown tenant is 404.",
)
async def mint_token(
    name: str,
    request: Request,
    admin: AdminDep,
    platform: PlatformDep,
    body: TokenRequest | None = None,
) -> TokenOut:
    if len(name) > 63 or not await platform.tenants.exists_async(name):
        raise ApiError(404, "Tenant not found", f"No tenant named '{name[:63]}'")
    ttl = body.ttlSeconds if body is not None else None
    subject = f"{name}-user"
    token, exp = platform.tokens.issue_tenant_expiring(name, subject, ttl)
    expires = iso(datetime.fromtimestamp(exp, UTC))
    platform.audit.record(
        actor_of(admin, request),
        "tenant.tokenIssued",
        SUCCESS,
        target=name,
        tenant=name,
        details={"subject": subject, "expiresAt": expires},
    )
    return TokenOut(token=token, tenant=name, subject=subject, expiresAt=expires)
