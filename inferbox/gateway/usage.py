"""Usage counting off the request path: admitted calls are counted in memory and added to the store at
least every second (and at shutdown), as increments, so that several gateways add up exactly.

Beside the totals, every call lands in its minute's bucket (`usage_buckets`): admitted requests and
their tokens, and refusals apart (a refused credential, a refused quota). The console draws its charts
from them. Buckets are kept for `BUCKET_RETENTION` (a day and an hour: the longest chart is a day) and
pruned by the recorders themselves, at most once per `PRUNE_EVERY`."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inferbox.blocking import in_thread
from inferbox.health import Dependency
from inferbox.store import Store
from inferbox.store.tables import Publication, Usage, UsageBucket

log = logging.getLogger("inferbox.gateway.usage")

BUCKET_SECONDS = 60
BUCKET_RETENTION = timedelta(hours=25)
PRUNE_EVERY = timedelta(minutes=5)
Refusal = Literal["unauthorized", "rateLimited"]


@dataclass
class _Delta:
    requests: int = 0
    tokens: int = 0
    last_access: datetime | None = None


@dataclass
class _Bucket:
    requests: int = 0
    tokens: int = 0
    unauthorized: int = 0
    rate_limited: int = 0

    def add(self, other: _Bucket) -> None:
        self.requests += other.requests
        self.tokens += other.tokens
        self.unauthorized += other.unauthorized
        self.rate_limited += other.rate_limited


def bucket_start(moment: datetime) -> datetime:
    """The start of the minute `moment` falls in (UTC)."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


class UsageRecorder:
    """Counts in memory, flushes as increments. A flush that fails (the store is down) keeps its counts
    for the next one; what a SIGKILL takes with it is at most the last `interval` of counts."""

    def __init__(self, store: Store, store_health: Dependency | None = None) -> None:
        self._store = store
        self._health = store_health or Dependency("the store")
        self._pending: dict[int, _Delta] = defaultdict(_Delta)
        self._buckets: dict[tuple[int, datetime], _Bucket] = defaultdict(_Bucket)
        self._flush_lock = asyncio.Lock()
        self._pruned_at: datetime | None = None

    def record(self, publication_id: int, *, requests: int = 1, tokens: int = 0) -> None:
        stamp = datetime.now(UTC)
        delta = self._pending[publication_id]
        delta.requests += requests
        delta.tokens += tokens
        delta.last_access = stamp
        bucket = self._buckets[(publication_id, bucket_start(stamp))]
        bucket.requests += requests
        bucket.tokens += tokens

    def refused(self, publication_id: int, why: Refusal) -> None:
        """A call the gateway refused: counted in its minute's bucket only (it is not usage)."""
        bucket = self._buckets[(publication_id, bucket_start(datetime.now(UTC)))]
        if why == "unauthorized":
            bucket.unauthorized += 1
        else:
            bucket.rate_limited += 1

    async def flush(self) -> None:
        async with self._flush_lock:
            if not self._pending and not self._buckets:
                return
            batch, self._pending = self._pending, defaultdict(_Delta)
            buckets, self._buckets = self._buckets, defaultdict(_Bucket)
            try:
                await in_thread(self._write, batch, buckets)
            except Exception as exc:
                self._health.failed(exc)
                for pub_id, delta in batch.items():
                    mine = self._pending[pub_id]
                    mine.requests += delta.requests
                    mine.tokens += delta.tokens
                    mine.last_access = max(filter(None, (mine.last_access, delta.last_access)), default=None)
                for key, counts in buckets.items():
                    self._buckets[key].add(counts)
            else:
                self._health.ok()

    def _write(self, batch: dict[int, _Delta], buckets: dict[tuple[int, datetime], _Bucket]) -> None:
        """One atomic increment per publication: several gateways flushing at once add up exactly
        (a read-modify-write would lose one of two concurrent flushes on SQLite)."""
        today = datetime.now(UTC).date()
        with self._store.session() as session:
            self._write_buckets(session, buckets)
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

    def _write_buckets(self, session: Session, buckets: dict[tuple[int, datetime], _Bucket]) -> None:
        """An upsert per bucket that adds to what other gateways wrote (INSERT … ON CONFLICT DO
        UPDATE, which SQLite and PostgreSQL both have), in key order so that two flushes never
        deadlock on PostgreSQL; and now and then the pruning of expired buckets."""
        dialect = postgresql if self._store.dialect == "postgresql" else sqlite
        for (pub_id, start), counts in sorted(buckets.items()):
            stmt = dialect.insert(UsageBucket).values(
                publication_id=pub_id,
                start=start,
                requests=counts.requests,
                tokens=counts.tokens,
                unauthorized=counts.unauthorized,
                rate_limited=counts.rate_limited,
            )
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[UsageBucket.publication_id, UsageBucket.start],
                    set_={
                        "requests": UsageBucket.requests + stmt.excluded.requests,
                        "tokens": UsageBucket.tokens + stmt.excluded.tokens,
                        "unauthorized": UsageBucket.unauthorized + stmt.excluded.unauthorized,
                        "rate_limited": UsageBucket.rate_limited + stmt.excluded.rate_limited,
                    },
                )
            )
        stamp = datetime.now(UTC)
        if self._pruned_at is None or stamp - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = stamp
            session.execute(delete(UsageBucket).where(UsageBucket.start < stamp - BUCKET_RETENTION))
            session.execute(
                delete(UsageBucket).where(UsageBucket.publication_id.not_in(select(Publication.id)))
            )

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
