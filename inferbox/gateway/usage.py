"""Usage counting off the request path: admitted calls are counted in memory and added to the store at
least every second (and at shutdown), as increments, so that several gateways add up exactly."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from inferbox.store import Store
from inferbox.store.tables import Usage

log = logging.getLogger("inferbox.gateway.usage")


@dataclass
class _Delta:
    requests: int = 0
    tokens: int = 0
    last_access: datetime | None = None


class UsageRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store
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
                await run_in_threadpool(self._write, batch)
            except Exception:
                log.exception("could not write usage; keeping it for the next flush")
                for pub_id, delta in batch.items():
                    mine = self._pending[pub_id]
                    mine.requests += delta.requests
                    mine.tokens += delta.tokens
                    mine.last_access = max(filter(None, (mine.last_access, delta.last_access)), default=None)

    def _write(self, batch: dict[int, _Delta]) -> None:
        today = datetime.now(UTC).date()
        with self._store.session() as session:
            for pub_id, delta in sorted(batch.items()):
                usage = session.get(Usage, pub_id, with_for_update=True)
                if usage is None:  # unpublished meanwhile: nothing to count against
                    continue
                usage.total_requests += delta.requests
                usage.tokens_used += delta.tokens
                if usage.day == today:
                    usage.requests_today += delta.requests
                else:
                    usage.day, usage.requests_today = today, delta.requests
                if delta.last_access and (
                    usage.last_access_time is None or delta.last_access > usage.last_access_time
                ):
                    usage.last_access_time = delta.last_access

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
