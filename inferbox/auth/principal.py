"""The caller of a request, after its token was verified."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Principal:
    tenant: str  # "admin" for the platform admin
    subject: str
    name: str
    issuer: str | None
    audience: str | list[str] | None
    expires_at: datetime | None
    is_admin: bool = False

    @property
    def rate_key(self) -> str:
        """Whose budget a request spends: one per admin subject, one per tenant user."""
        return f"admin:{self.subject}" if self.is_admin else f"tenant:{self.tenant}:{self.subject}"
