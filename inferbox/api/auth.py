"""Authentication routes: admin login, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from inferbox.api.deps import PlatformDep, PrincipalDep, source_ip
from inferbox.api.errors import ApiError
from inferbox.assembly import Platform
from inferbox.auth.admin import check_admin
from inferbox.blocking import in_thread
from inferbox.control.audit import DENIED, FAILURE, SUCCESS, Actor
from inferbox.ratelimit import Quota
from inferbox.timefmt import iso

router = APIRouter(tags=["auth"])

# Login attempts are counted before the password is checked (so that concurrent guesses cannot all slip
# through one check), per (username, address) and per address; a success clears both. An anonymous
# caller can therefore slow down its own address only, never lock the admin out elsewhere. Across all
# addresses a username takes at most USER_CEILING failures per window: past that, only addresses it
# logged in from before (within KNOWN_ADDRESS) may still try, which bounds a guesser spread over many
# addresses and still lets the real admin in from where they usually work.
PAIR_LOCKOUT = (Quota("login-failures", 5, 300),)
ADDRESS_LOCKOUT = (Quota("login-failures-address", 20, 300),)
USER_CEILING = (Quota("login-failures-user", 100, 300),)
KNOWN_ADDRESS = (Quota("login-known-address", 1_000_000, 30 * 86400),)


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
    limiter = platform.limiter
    pair_key = f"login:pair:{body.username}:{address}"
    address_key = f"login:address:{address}"
    user_key = f"login:user:{body.username}"
    known_key = f"login:known:{body.username}:{address}"
    refused = None
    for key, quotas in ((pair_key, PAIR_LOCKOUT), (address_key, ADDRESS_LOCKOUT)):
        decision = await limiter.hit(key, quotas)
        if not decision.allowed:
            refused = decision
            break
    if refused is None:
        ceiling = await limiter.hit(user_key, USER_CEILING)
        if not ceiling.allowed and not await _known(platform, known_key):
            refused = ceiling
    if refused is not None:
        platform.audit.record(
            actor, "auth.login", DENIED, target=body.username, details={"reason": "locked out"}
        )
        raise ApiError(
            429,
            "Too many failed login attempts",
            f"Try again in {refused.retry_after} seconds",
            headers={"Retry-After": str(refused.retry_after)},
        )
    ok = await in_thread(check_admin, platform.store, body.username, body.password)
    if not ok or body.username != platform.settings.admin_username:
        platform.audit.record(actor, "auth.login", FAILURE, target=body.username)
        raise ApiError(401, "Invalid credentials", "Wrong username or password")
    await limiter.clear(pair_key, PAIR_LOCKOUT)
    await limiter.clear(address_key, ADDRESS_LOCKOUT)
    await limiter.hit(known_key, KNOWN_ADDRESS)
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


async def _known(platform: Platform, known_key: str) -> bool:
    """Whether the admin logged in from this address within KNOWN_ADDRESS."""
    (state,) = await platform.limiter.states(known_key, KNOWN_ADDRESS)
    return state.remaining < state.quota.amount


@router.get("/api/tenant", response_model=TenantInfo, summary="The calling user and tenant")
def whoami(principal: PrincipalDep) -> TenantInfo:
    expires = iso(principal.expires_at)
    return TenantInfo(
        tenant=principal.tenant,
        user=principal.subject,
        name=principal.name,
        isAdmin=principal.is_admin,
        issuer=principal.issuer,
        audience=principal.audience,
        expiresAt=expires,
    )
