"""The append-only audit log: every mutating call and every security event, never a secret."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from inferbox.health import Dependency
from inferbox.logs import request_id_var, scrub_data
from inferbox.store import STORE_UNAVAILABLE, Store
from inferbox.store.tables import AuditEntry
from inferbox.timefmt import iso

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


# While the store is down an entry is retried (it is not lost), waiting longer each time up to this.
RETRY_MAX_SECONDS = 5.0
FLUSH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the log as its readers get it: a plain value."""

    id: int
    timestamp: datetime
    actor: str
    tenant: str | None
    action: str
    target: str | None
    outcome: str
    request_id: str | None
    source_ip: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, e: AuditEntry) -> AuditRecord:
        return cls(
            e.id,
            e.timestamp,
            e.actor,
            e.tenant,
            e.action,
            e.target,
            e.outcome,
            e.request_id,
            e.source_ip,
            dict(e.details or {}),
        )

    def view(self) -> dict[str, Any]:
        """The API's names and an RFC 3339 time, to the millisecond."""
        return {
            "id": self.id,
            "timestamp": iso(self.timestamp, millis=True),
            "actor": self.actor,
            "tenant": self.tenant,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "requestId": self.request_id,
            "sourceIp": self.source_ip,
            "details": self.details,
        }


class AuditLog:
    """Entries are written by one background thread, in order: recording never blocks the event loop
    (an audit write waiting on SQLite's lock would otherwise stall every request), and a query first
    waits until everything recorded before it is in the store. While the store is unreachable the
    writer keeps the entries and retries; the outage is logged once per interval, not per entry."""

    def __init__(self, store: Store, store_health: Dependency | None = None) -> None:
        self._store = store
        self._health = store_health or Dependency("the store")
        self._queue: queue.Queue[AuditEntry | None] = queue.Queue()
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="inferbox-audit", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                self._write(entry)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write(self, entry: AuditEntry) -> None:
        delay = 0.2
        while True:
            try:
                with self._store.session() as session:
                    session.add(entry)
            except STORE_UNAVAILABLE as exc:
                self._health.failed(exc)
                if self._stopping.wait(delay):
                    log.warning("audit entry for %s not written: the store is unreachable", entry.action)
                    return
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            except Exception:  # the audit must not turn a done action into an error answer
                log.exception("could not write audit entry for %s", entry.action)
                return
            self._health.ok()
            return

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait (at most `timeout` seconds) until every entry recorded so far is written."""
        with self._queue.all_tasks_done:
            self._queue.all_tasks_done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=10)
        # A store still down at shutdown: give up on what is left rather than hang the stop.
        self._stopping.set()
        self._writer.join(timeout=5)

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
    ) -> list[AuditRecord]:
        """Entries, newest first. Blocking: call it in a worker thread."""
        self.flush()
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if tenant:
            stmt = stmt.where(AuditEntry.tenant == tenant)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        if since:
            stmt = stmt.where(AuditEntry.timestamp >= since)
        with self._store.session() as session:
            return [AuditRecord.of(e) for e in session.scalars(stmt)]
