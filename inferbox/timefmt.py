"""Timestamps as inferbox writes them: RFC 3339 in UTC with a `Z`, to the second as Kubernetes does, or
to the millisecond where ordering within a second matters (events, audit, log lines)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso(value: datetime, *, millis: bool = False) -> str: ...
@overload
def iso(value: None, *, millis: bool = False) -> None: ...
def iso(value: datetime | None, *, millis: bool = False) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    if millis:
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


def iso_now(*, millis: bool = True) -> str:
    return iso(now(), millis=millis)
