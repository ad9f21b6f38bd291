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
Namespace = Annotated[
    str | None,
    Query(
        description="the tenant to look in (admin only; a tenant always works in its own)",
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
