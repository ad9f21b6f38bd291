"""Tenant administration (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from inferbox.api.deps import AdminDep, PlatformDep, actor_of
from inferbox.blocking import in_thread
from inferbox.control.tenants import TenantView
from inferbox.timefmt import iso

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
