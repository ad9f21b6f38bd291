"""The append-only audit log: every mutating call and every security event, never a secret."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from inferbox.logs import request_id_var, scrub_data
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
    """Entries are written by one background thread, in order: recording never blocks the event loop
    (an audit write waiting on SQLite's lock would otherwise stall every request), and a query first
    waits until everything recorded before it is in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.Queue[AuditEntry | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="inferbox-audit", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                with self._store.session() as session:
                    session.add(entry)
            except Exception:  # the audit must not turn a done action into an error answer
                log.exception("could not write audit entry for %s", entry.action)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        """Wait until every entry recorded so far is written."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=30)

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
            details=scrub_data(details or {}),
        )
        self._queue.put(entry)

    def query(
        self,
        *,
        limit: int = 100,
        tenant: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
    ) -> list[AuditEntry]:
        self.flush()
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if tenant:
            stmt = stmt.where(AuditEntry.tenant == tenant)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        if since:
            stmt = stmt.where(AuditEntry.timestamp >= since)
        with self._store.session() as session:
            return list(session.scalars(stmt))
