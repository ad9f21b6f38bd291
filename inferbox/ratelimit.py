"""Rate limits with the `limits` library: in-process by default, Redis when REDIS_URL is set, so that
several processes sharing one Redis share one budget.

Windows are fixed windows that open at a key's first request (as Envoy's global rate limit counts):
each hit is one atomic increment, O(1) in memory and one round trip to Redis, so the count is exact
(N admitted in a window, never N+1, however many processes race) and the cost does not grow with the
limit. A moving window would keep one timestamp per admitted request: millions for an hourly limit.
One `Limiter` serves the API, the login lock-out and the gateway; each names its quotas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string


class _WindowItem(RateLimitItemPerSecond):
    """A limit whose storage key names its window but not its amount: lowering or raising a limit keeps
    the requests already counted in the window (limits' own key would start a new, empty one)."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        parts = [str(k) for k in identifiers]
        return f"{self.namespace}/{'/'.join(parts)}/{self.multiples}s"


@dataclass(frozen=True)
class Quota:
    """`amount` per `seconds`, with a name for headers and refusal messages."""

    name: str
    amount: int
    seconds: int

    @cached_property
    def item(self) -> RateLimitItem:
        return _WindowItem(self.amount, self.seconds)

    def describe(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(self.seconds)
        per = f"per {unit}" if unit else f"per {self.seconds} seconds"
        return f"{self.amount} requests {per}"


@dataclass(frozen=True)
class QuotaState:
    quota: Quota
    remaining: int
    reset_after: int  # seconds until the window has room again


@dataclass(frozen=True)
class Decision:
    allowed: bool
    states: tuple[QuotaState, ...]
    refused_by: Quota | None = None

    @property
    def retry_after(self) -> int:
        if self.refused_by is None:
            return 0
        state = next(s for s in self.states if s.quota == self.refused_by)
        return max(1, state.reset_after)

    def headers(self, primary: str) -> dict[str, str]:
        """The de-facto X-RateLimit-* trio (for the `primary` quota) and the IETF RateLimit pair."""
        by_name = {s.quota.name: s for s in self.states}
        main = by_name.get(primary) or self.states[0]
        headers = {
            "X-RateLimit-Limit": str(main.quota.amount),
            "X-RateLimit-Remaining": str(main.remaining),
            "X-RateLimit-Reset": str(main.reset_after),
            "RateLimit-Policy": ", ".join(
                f'"{s.quota.name}";q={s.quota.amount};w={s.quota.seconds}' for s in self.states
            ),
            "RateLimit": ", ".join(
                f'"{s.quota.name}";r={s.remaining};t={s.reset_after}' for s in self.states
            ),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class Limiter:
    """Hits quotas for a key. Every quota is hit atomically in the storage; a request counts against
    later quotas only once the earlier ones admitted it."""

    def __init__(self, redis_url: str | None = None, *, prefix: str = "inferbox") -> None:
        if redis_url:
            scheme, rest = redis_url.split("://", 1)
            self._storage = storage_from_string(
                f"async+{scheme}://{rest}", implementation="redispy", key_prefix=prefix
            )
        else:
            self._storage = storage_from_string("async+memory://")
        self._strategy = FixedWindowRateLimiter(self._storage)  # type: ignore[arg-type]

    async def hit(self, key: str, quotas: Sequence[Quota], cost: int = 1) -> Decision:
        """Spend `cost` of each quota in turn until one refuses. The fixed-window strategy's own hit
        is one increment compared with the amount; doing that increment here keeps its count, so the
        answer's remaining budget costs one more storage call per quota instead of three."""
        storage = self._storage
        now = time.time()
        refused: Quota | None = None
        states = []
        for quota in quotas:
            item = quota.item
            storage_key = item.key_for(key, quota.name)
            if refused is None:
                count = await storage.incr(storage_key, item.get_expiry(), amount=cost)
                if count > quota.amount:
                    refused = quota
            else:
                count = await storage.get(storage_key)
            reset_after = max(0, math.ceil(await storage.get_expiry(storage_key) - now))
            states.append(QuotaState(quota, max(0, quota.amount - count), reset_after))
        return Decision(refused is None, tuple(states), refused)

    async def test(self, key: str, quotas: Sequence[Quota]) -> Decision:
        """Would one more request be admitted? Spends nothing."""
        for quota in quotas:
            if not await self._strategy.test(quota.item, key, quota.name):
                return Decision(False, await self.states(key, quotas), quota)
        return Decision(True, await self.states(key, quotas))

    async def states(self, key: str, quotas: Sequence[Quota]) -> tuple[QuotaState, ...]:
        now = time.time()
        states = []
        for quota in quotas:
            stats = await self._strategy.get_window_stats(quota.item, key, quota.name)
            reset_after = max(0, math.ceil(stats.reset_time - now))
            states.append(QuotaState(quota, max(0, stats.remaining), reset_after))
        return tuple(states)

    async def clear(self, key: str, quotas: Sequence[Quota]) -> None:
        for quota in quotas:
            await self._strategy.clear(quota.item, key, quota.name)
