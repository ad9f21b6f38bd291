"""Tenant administration (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from inferbox.api.deps import AdminDep, PlatformDep, actor_of
from inferbox.api.errors import bad_request, conflict, not_found
from inferbox.control import tenants as tenant_rules
from inferbox.control.audit import FAILURE, SUCCESS
from inferbox.control.tenants import TenantExists, TenantNotFound
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


@router.get("/api/admin/tenants", response_model=TenantList, summary="List tenants")
def list_tenants(_admin: AdminDep, platform: PlatformDep) -> TenantList:
    return TenantList(
        tenants=[
            TenantOut(name=t.name, status=t.status, created=iso(t.created)) for t in platform.tenants.list()
        ]
    )


@router.post("/api/admin/tenants", status_code=201, response_model=TenantOut, summary="Create a tenant")
def create_tenant(body: TenantCreate, request: Request, admin: AdminDep, platform: PlatformDep) -> TenantOut:
    actor = actor_of(admin, request)
    problem = tenant_rules.label_problem(body.name)
    if problem is None and body.name in tenant_rules.RESERVED:
        problem = "is reserved"
    if problem:
        platform.audit.record(actor, "tenant.create", FAILURE, target=body.name, details={"reason": problem})
        raise bad_request(f"Field 'name' {problem}")
    try:
        tenant = platform.tenants.create(body.name)
    except TenantExists:
        platform.audit.record(actor, "tenant.create", FAILURE, target=body.name, details={"reason": "exists"})
        raise conflict("Tenant already exists", f"Tenant '{body.name}' already exists") from None
    platform.audit.record(actor, "tenant.create", SUCCESS, target=body.name, tenant=body.name)
    return TenantOut(name=tenant.name, status=tenant.status, created=iso(tenant.created))


@router.delete("/api/admin/tenants/{name}", summary="Delete a tenant")
async def delete_tenant(
    name: str,
    request: Request,
    admin: AdminDep,
    platform: PlatformDep,
    force: bool = Query(False, description="Also delete the tenant's models"),
) -> JSONResponse:
    actor = actor_of(admin, request)
    if not platform.tenants.exists(name):
        raise not_found("Tenant", f"No tenant named '{name}'")
    count = platform.tenants.model_count(name)
    if count and not force:
        platform.audit.record(
            actor, "tenant.delete", FAILURE, target=name, tenant=name, details={"models": count}
        )
        raise conflict("Tenant still owns models", f"Tenant '{name}' owns {count} model(s); pass ?force=true")
    await platform.models.delete_namespace(name, actor)
    try:
        platform.tenants.delete(name)
    except TenantNotFound:
        raise not_found("Tenant", f"No tenant named '{name}'") from None
    platform.audit.record(actor, "tenant.delete", SUCCESS, target=name, tenant=name, details={"force": force})
    return JSONResponse({"message": "Tenant deleted successfully", "name": name})
