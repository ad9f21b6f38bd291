"""The one way inferbox runs blocking work (store queries, DNS lookups, file system walks) from the
event loop: in AnyIO's worker threads, the pool Starlette runs sync routes in (40 threads, which the
SQLite connection pool is sized for). Nothing blocking runs on the loop itself: the gateway of
`inferbox serve` answers from it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ParamSpec, TypeVar

from anyio import to_thread

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread; the caller awaits its result (or its exception)."""
    return await to_thread.run_sync(partial(fn, *args, **kwargs))
