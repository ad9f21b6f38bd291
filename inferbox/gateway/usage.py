"""Usage counting off the request path: admitted calls are counted in memory and added to the store at
least every second (and at shutdown), as increments, so that several gateways add up exactly."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, update

from inferbox.blocking import in_thread
from inferbox.health import Dependency
from inferbox.store import Store
from inferbox.store.tables import Usage

log = logging.getLogger("inferbox.gateway.usage")


@dataclass
class _Delta:
    requests: int = 0
    tokens: int = 0
    last_access: datetime | None = None


class UsageRecorder:
    """Counts in memory, flushes as increments. A flush that fails (the store is down) keeps its counts
    for the next one; what a SIGKILL takes with it is at most the last `interval` of counts."""

    def __init__(self, store: Store, store_health: Dependency | None = None) -> None:
        self._store = store
        self._health = store_health or Dependency("the store")
        self._pending: dict[int, _Delta] = defaultdict(_Delta)
        self._flush_lock = asyncio.Lock()

    def record(self, publication_id: int, *, requests: int = 1, tokens: int = 0) -> None:
        delta = self._pending[publication_id]
        delta.requests += requests
        delta.tokens += tokens
        delta.last_access = datetime.now(UTC)

    async def flush(self) -> None:
        async with self._flush_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, defaultdict(_Delta)
            try:
                await in_thread(self._write, batch)
            except Exception as exc:
                self._health.failed(exc)
                for pub_id, delta in batch.items():
                    mine = self._pending[pub_id]
                    mine.requests += delta.requests
                    mine.tokens += delta.tokens
                    mine.last_access = max(filter(None, (mine.last_access, delta.last_access)), default=None)
            else:
                self._health.ok()

    def _write(self, batch: dict[int, _Delta]) -> None:
        """One atomic increment per publication: several gateways flushing at once add up exactly
        (a read-modify-write would lose one of two concurrent flushes on SQLite)."""
        today = datetime.now(UTC).date()
        with self._store.session() as session:
            for pub_id, delta in sorted(batch.items()):
                last = delta.last_access
                session.execute(
                    update(Usage)
                    .where(Usage.publication_id == pub_id)
                    .values(
                        total_requests=Usage.total_requests + delta.requests,
                        tokens_used=Usage.tokens_used + delta.tokens,
                        requests_today=case(
                            (Usage.day == today, Usage.requests_today + delta.requests),
                            else_=delta.requests,
                        ),
                        day=today,
                        last_access_time=case(
                            (
                                (Usage.last_access_time.is_(None)) | (Usage.last_access_time < last),
                                last,
                            ),
                            else_=Usage.last_access_time,
                        )
                        if last is not None
                        else Usage.last_access_time,
                    )
                )

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
