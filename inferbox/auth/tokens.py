"""JWT issue and verification.

Tokens inferbox signs itself (admin login, `inferbox token`) are HS256 with JWT_SECRET. Tenant tokens
from an identity provider are verified with the keys its JWKS publishes (RS256/ES256) when JWT_JWKS_URL
is set. `exp` is required and checked, `nbf` is checked when present, `iss`/`aud` when configured, and
`alg: none` (or any algorithm not listed) is refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt import PyJWKClient

from inferbox.auth.principal import Principal
from inferbox.blocking import in_thread

ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header; None for any other value."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


class TokenError(Exception):
    """The token cannot be trusted; the message says why, safely (it never echoes the token)."""


class TokenService:
    def __init__(
        self,
        secret: str,
        *,
        issuer: str = "management-service",
        verify_issuer: str | None = None,
        audience: str | None = None,
        jwks_url: str | None = None,
        admin_username: str = "admin",
        ttl_seconds: int = 3600,
    ) -> None:
        self._secret = secret
        self.issuer = issuer
        self._verify_issuer = verify_issuer
        self._audience = audience
        self._admin_username = admin_username
        self.ttl_seconds = ttl_seconds
        self._jwks = PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None

    # -- issuing ---------------------------------------------------------------------------------
    def _sign(self, claims: dict[str, Any], ttl: int | None) -> tuple[str, int]:
        now = int(time.time())
        exp = now + (ttl or self.ttl_seconds)
        payload = {"iss": self.issuer, "iat": now, "nbf": now, "exp": exp, **claims}
        if self._audience:
            payload["aud"] = self._audience
        return jwt.encode(payload, self._secret, algorithm="HS256"), exp

    def issue_admin(self, username: str, ttl: int | None = None) -> tuple[str, int]:
        return self._sign({"sub": username, "tenant": "admin", "name": "Administrator", "isAdmin": True}, ttl)

    def issue_tenant(self, tenant: str, subject: str | None = None, ttl: int | None = None) -> str:
        token, _ = self.issue_tenant_expiring(tenant, subject, ttl)
        return token

    def issue_tenant_expiring(
        self, tenant: str, subject: str | None = None, ttl: int | None = None
    ) -> tuple[str, int]:
        """A tenant user's token and its `exp` (seconds since the epoch)."""
        return self._sign({"sub": subject or f"{tenant}-user", "tenant": tenant}, ttl)

    # -- verifying -------------------------------------------------------------------------------
    async def verify_async(self, token: str) -> Principal:
        """`verify` for the event loop: HS256 takes microseconds, but a JWKS token may need a key fetch,
        which runs in a worker thread."""
        if self.needs_network(token):
            return await in_thread(self.verify, token)
        return self.verify(token)

    def needs_network(self, token: str) -> bool:
        """Whether verifying this token may fetch keys from the JWKS URL (so must not block a loop)."""
        if self._jwks is None:
            return False
        try:
            return jwt.get_unverified_header(token).get("alg") != "HS256"
        except jwt.PyJWTError:
            return False

    def verify(self, token: str) -> Principal:
        """Verify a bearer token and return its principal. Tenant existence is the caller's check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("Malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenError("Unsigned tokens are not accepted")
        if alg == "HS256":
            key: Any = self._secret
            trusted_for_admin = True
        elif alg in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise TokenError(f"No signing key for this token: {exc}") from None
            trusted_for_admin = False
        else:
            raise TokenError(f"Token algorithm {alg} is not accepted")
        options = {"require": ["exp"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._verify_issuer,
                options=options,  # type: ignore[arg-type]
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("Token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("Token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("Token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise TokenError("Token issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"Token lacks the '{exc.claim}' claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("Token signature is invalid") from None
        except jwt.PyJWTError:
            raise TokenError("Token is invalid") from None
        # PyJWT reads a numeric string as a time ("exp": "9999999999" passes its check); RFC 7519
        # says these are NumericDates, JSON numbers.
        for claim in ("exp", "nbf", "iat"):
            value = claims.get(claim)
            if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise TokenError(f"Token's '{claim}' claim must be a number")
        return self._principal(claims, trusted_for_admin)

    def _principal(self, claims: dict[str, Any], trusted_for_admin: bool) -> Principal:
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise TokenError("Token lacks the 'tenant' claim")
        subject = str(claims.get("sub") or tenant)
        # Only a token we signed ourselves, for the configured admin, carries admin rights: an identity
        # provider's token that says isAdmin does not.
        is_admin = (
            trusted_for_admin
            and tenant == "admin"
            and claims.get("isAdmin") is True
            and subject == self._admin_username
        )
        exp = claims.get("exp")
        return Principal(
            tenant=tenant,
            subject=subject,
            name=str(claims.get("name") or subject),
            issuer=claims.get("iss"),
            audience=claims.get("aud"),
            expires_at=datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None,
            is_admin=is_admin,
        )
