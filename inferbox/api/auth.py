"""Authentication routes: admin login, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from inferbox.api.deps import PlatformDep, PrincipalDep, source_ip
from inferbox.auth.admin import check_admin
from inferbox.control.audit import DENIED, FAILURE, SUCCESS, Actor
from inferbox.errors import ApiError
from inferbox.ratelimit import Quota

router = APIRouter(tags=["auth"])

# Failed logins allowed before a cool-down, per username and per client address.
USER_LOCKOUT = (Quota("login-failures-user", 5, 300),)
ADDRESS_LOCKOUT = (Quota("login-failures-address", 20, 300),)  # both count attempts; success clears


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LoginUser(BaseModel):
    tenant: str
    name: str
    subject: str
    issuer: str
    isAdmin: bool
    exp: int


class LoginResponse(BaseModel):
    token: str
    user: LoginUser


class TenantInfo(BaseModel):
    tenant: str
    user: str
    name: str
    isAdmin: bool
    issuer: str | None
    audience: str | list[str] | None
    expiresAt: str | None


@router.post("/api/admin/login", response_model=LoginResponse, summary="Log in as the platform admin")
async def login(body: LoginRequest, request: Request, platform: PlatformDep) -> LoginResponse:
    address = source_ip(request)
    actor = Actor(body.username, None, address)
    user_key, address_key = f"login:user:{body.username}", f"login:address:{address}"
    # Every attempt is counted before the password is checked, so concurrent guesses cannot all slip
    # through one check; a success takes its own attempt back off the username's count.
    for key, quotas in ((user_key, USER_LOCKOUT), (address_key, ADDRESS_LOCKOUT)):
        decision = await platform.limiter.hit(key, quotas)
        if not decision.allowed:
            platform.audit.record(
                actor,
                "auth.login",
                DENIED,
                target=body.username,
                details={"reason": "locked out"},
            )
            raise ApiError(
                429,
                "Too many failed login attempts",
                f"Try again in {decision.retry_after} seconds",
                headers={"Retry-After": str(decision.retry_after)},
            )
    ok = await run_in_threadpool(check_admin, platform.store, body.username, body.password)
    if not ok or body.username != platform.settings.admin_username:
        platform.audit.record(actor, "auth.login", FAILURE, target=body.username)
        raise ApiError(401, "Invalid credentials", "Wrong username or password")
    await platform.limiter.clear(user_key, USER_LOCKOUT)
    await platform.limiter.clear(address_key, ADDRESS_LOCKOUT)
    token, exp = platform.tokens.issue_admin(body.username)
    platform.audit.record(actor, "auth.login", SUCCESS, target=body.username)
    return LoginResponse(
        token=token,
        user=LoginUser(
            tenant="admin",
            name="Administrator",
            subject=body.username,
            issuer=platform.tokens.issuer,
            isAdmin=True,
            exp=exp,
        ),
    )


@router.get("/api/tenant", response_model=TenantInfo, summary="The calling user and tenant")
def whoami(principal: PrincipalDep) -> TenantInfo:
    expires = principal.expires_at.isoformat().replace("+00:00", "Z") if principal.expires_at else None
    return TenantInfo(
        tenant=principal.tenant,
        user=principal.subject,
        name=principal.name,
        isAdmin=principal.is_admin,
        issuer=principal.issuer,
        audience=principal.audience,
        expiresAt=expires,
    )
