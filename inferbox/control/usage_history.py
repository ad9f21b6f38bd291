"""A publication's usage over time: the minute buckets the gateways keep (gateway/usage.py), read back
as a dense series for a window (every bucket present, empty ones as zeros), for the console's charts.

`1h` is sixty one-minute buckets; `24h` is twenty-four one-hour buckets, summed from the minutes. The
series ends with the bucket that holds now, so the latest calls are always on the chart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select

from inferbox.control.errors import NotFound
from inferbox.control.model_rows import ModelRecord
from inferbox.control.publishing import config_of
from inferbox.gateway.usage import bucket_start
from inferbox.store import Store
from inferbox.store.tables import Publication, UsageBucket
from inferbox.timefmt import iso, now

UsageWindow = Literal["1h", "24h"]
_COUNTS = ("requests", "tokens", "unauthorized", "rateLimited")


@dataclass(frozen=True)
class _Shape:
    bucket: timedelta
    count: int


WINDOWS: dict[str, _Shape] = {
    "1h": _Shape(timedelta(minutes=1), 60),
    "24h": _Shape(timedelta(hours=1), 24),
}


def _floor(moment: datetime, step: timedelta) -> datetime:
    minute = bucket_start(moment)
    return minute.replace(minute=0) if step >= timedelta(hours=1) else minute


def history(store: Store, model: ModelRecord, window: UsageWindow) -> dict[str, Any]:
    """The window's buckets of `model`'s publication (NotFound when it is not published), with the
    publication's limits so that a chart can draw them."""
    shape = WINDOWS[window]
    last = _floor(now(), shape.bucket)
    first = last - shape.bucket * (shape.count - 1)
    with store.session() as session:
        pub = session.scalar(select(Publication).where(Publication.model_id == model.id))
        if pub is None:
            raise NotFound("Published model", f"Model '{model.name}' is not published")
        # A publication id may be reused after an unpublish (SQLite reuses the highest rowid): minutes
        # before this publication existed belong to an earlier one.
        since = max(first, bucket_start(pub.created_at))
        rows = session.execute(
            select(UsageBucket).where(UsageBucket.publication_id == pub.id, UsageBucket.start >= since)
        ).scalars()
        sums: dict[datetime, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTS, 0))
        for row in rows:
            into = sums[_floor(row.start, shape.bucket)]
            into["requests"] += row.requests
            into["tokens"] += row.tokens
            into["unauthorized"] += row.unauthorized
            into["rateLimited"] += row.rate_limited
        limits = config_of(pub).rateLimiting.model_dump()
    buckets: list[dict[str, Any]] = []
    for i in range(shape.count):
        start = first + shape.bucket * i
        buckets.append({"start": iso(start), **sums.get(start, dict.fromkeys(_COUNTS, 0))})
    totals = {name: sum(b[name] for b in buckets) for name in _COUNTS}
    return {
        "modelName": model.name,
        "namespace": model.namespace,
        "window": window,
        "bucketSeconds": int(shape.bucket.total_seconds()),
        "from": iso(first),
        "to": iso(last + shape.bucket),
        "limits": limits,
        "buckets": buckets,
        "totals": totals,
    }
