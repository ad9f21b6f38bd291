"""The append-only audit log: every mutating call and every security event, never a secret."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from inferbox.logs import request_id_var, scrub
from inferbox.store import Store
from inferbox.store.tables import AuditEntry

log = logging.getLogger("inferbox.audit")

SUCCESS = "success"
FAILURE = "failure"
DENIED = "denied"


@dataclass(frozen=True)
class Actor:
    """Who did it and from where; `tenant` is the tenant acted on (or the actor's own)."""

    name: str
    tenant: str | None
    source_ip: str | None


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self,
        actor: Actor,
        action: str,
        outcome: str,
        *,
        target: str | None = None,
        tenant: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        entry = AuditEntry(
            timestamp=datetime.now(UTC),
            actor=actor.name,
            tenant=tenant if tenant is not None else actor.tenant,
            action=action,
            target=target,
            outcome=outcome,
            request_id=request_id_var.get(),
            source_ip=actor.source_ip,
            details={k: scrub(v) if isinstance(v, str) else v for k, v in (details or {}).items()},
        )
        try:
            with self._store.session() as session:
                session.add(entry)
        except Exception:  # the audit must not turn a done action into an error answer
            log.exception("could not write audit entry for %s", action)

    def query(
        self,
        *,
        limit: int = 100,
        tenant: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if tenant:
            stmt = stmt.where(AuditEntry.tenant == tenant)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        if since:
            stmt = stmt.where(AuditEntry.timestamp >= since)
        with self._store.session() as session:
            return list(session.scalars(stmt))
