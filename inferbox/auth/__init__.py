"""Who is calling: JWT verification (HS256 secret or JWKS), admin credentials, principals."""
