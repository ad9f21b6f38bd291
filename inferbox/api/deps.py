"""Dependencies every route shares: the platform, the caller, and the admin check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from inferbox.api.errors import forbidden, unauthorized
from inferbox.api.middleware import client_address
from inferbox.assembly import Platform
from inferbox.auth.principal import Principal
from inferbox.control.audit import DENIED, Actor


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]

# Path and query parameters that most routes share, documented once.
ModelName = Annotated[str, Path(description="the model's name", examples=["my-model"], max_length=253)]
NamespaceQuery = Annotated[
    str | None,
    Query(
        alias="namespace",
        description="the tenant to look in (admin only; a tenant may name only its own: another is 403)",
        examples=["tenant-a"],
        max_length=253,
    ),
]


def source_ip(request: Request) -> str:
    return client_address(request.scope)


async def get_principal(request: Request, platform: PlatformDep) -> Principal:
    """The verified caller (the API guard verified the token); 401 for none, a bad one, or an unknown
    tenant. Refusals of a presented token are audited. Runs on the event loop: the store is only asked
    (in a worker thread) when the tenant cache does not know the answer."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        problem = getattr(request.state, "auth_error", None)
        if problem is None:
            raise unauthorized("Missing bearer token")
        platform.audit.record(
            Actor("anonymous", None, source_ip(request)),
            "auth.tokenRefused",
            DENIED,
            target=request.url.path,
            details={"reason": problem},
        )
        raise unauthorized(problem)
    if not principal.is_admin and not await platform.tenants.exists_async(principal.tenant):
        platform.audit.record(
            Actor(principal.subject, principal.tenant, source_ip(request)),
            "auth.tokenRefused",
            DENIED,
            target=request.url.path,
            details={"reason": "unknown tenant"},
        )
        raise unauthorized(f"Unknown tenant: {principal.tenant}")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise forbidden("Admin access required", "This route is for the platform admin")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


def actor_of(principal: Principal, request: Request) -> Actor:
    return Actor(principal.subject, None if principal.is_admin else principal.tenant, source_ip(request))


# The tenant name kept in an audit entry of a refused cross-tenant call: enough to read, bounded.
AUDIT_NAME_CHARS = 63


def check_tenant_scope(
    principal: Principal, given: str | None, where: str, request: Request, platform: Platform
) -> None:
    """A tenant user that names another tenant (in `where`: `?namespace=`, `namespace`, `config.tenantId`)
    gets the spec's 403, whether or not that tenant exists: the answer must not tell which tenants do.
    An empty string names nothing. Refusals are audited as `auth.crossTenant`."""
    if principal.is_admin or not given or given == principal.tenant:
        return
    platform.audit.record(
        Actor(principal.subject, principal.tenant, source_ip(request)),
        "auth.crossTenant",
        DENIED,
        target=request.url.path,
        tenant=principal.tenant,
        details={"field": where, "named": given[:AUDIT_NAME_CHARS]},
    )
    raise forbidden(
        f"Insufficient permissions for tenant: {given}",
        f"A tenant user works in its own tenant only ({where})",
    )


async def get_namespace(
    request: Request, principal: PrincipalDep, platform: PlatformDep, namespace: NamespaceQuery = None
) -> str | None:
    """`?namespace=`, after refusing a tenant that names another tenant (403)."""
    check_tenant_scope(principal, namespace, "?namespace=", request, platform)
    return namespace


# The `?namespace=` of a route: the admin's choice of tenant, or a tenant's own name (anything else: 403).
Namespace = Annotated[str | None, Depends(get_namespace)]
