"""Who is calling: JWT verification (HS256 secret or JWKS), admin credentials, principals."""

from inferbox.auth.principal import Principal
from inferbox.auth.tokens import TokenError, TokenService

__all__ = ["Principal", "TokenError", "TokenService"]
