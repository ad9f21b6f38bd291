"""Rate limits with the `limits` library: in-process by default, Redis when REDIS_URL is set, so that
several processes sharing one Redis share one budget.

Windows are fixed windows that open at a key's first request (as Envoy's global rate limit counts):
each hit is one atomic increment, O(1) in memory and one round trip to Redis, so the count is exact
(N admitted in a window, never N+1, however many processes race) and the cost does not grow with the
limit. A moving window would keep one timestamp per admitted request: millions for an hourly limit.
One `Limiter` serves the API, the login lock-out and the gateway; each names its quotas.

Token budgets are spent by reservation (`reserve`, then `settle`): a request takes what it can cost at
most before it runs (or what is left, when less), so concurrent requests can never spend together more
than the window holds, and gives back what it did not use once it has run, into the same window only.

When Redis is unreachable a limiter either answers from in-process windows (`fallback=True`: the API,
whose limits protect the service and need not be exact for a while) or refuses with
`LimiterUnavailable` (the gateway, whose limits are the publications' contracts: a per-process budget
would multiply them by the number of gateways). After a failure Redis is left alone for
`PROBE_SECONDS`, so an outage costs one failed round trip per second, not one per request.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.exceptions import RedisError

from inferbox.health import Dependency

T = TypeVar("T")


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


@dataclass(frozen=True)
class Reservation:
    """Tokens taken from a quota's window before a request runs. `granted` may be less than asked
    (what was left), 0 when nothing was; `expires_at` names the window (its end, in ms on the
    storage's clock), so that `settle` never gives back into a later one."""

    key: str
    quota: Quota
    asked: int
    granted: int
    remaining: int  # left in the window after this reservation
    reset_after: int  # seconds until the window ends
    expires_at: int

    @property
    def state(self) -> QuotaState:
        return QuotaState(self.quota, self.remaining, self.reset_after)


# Reserve on Redis in one script: read the window, take what fits, open the window if it is new, and
# answer the window's end on Redis's clock (every gateway reads the same clock).
_RESERVE = """
local limit, amount, expiry = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(amount, math.max(0, limit - used))
redis.call('INCRBY', KEYS[1], grant)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], expiry) end
local pttl = redis.call('PTTL', KEYS[1])
local t = redis.call('TIME')
return {grant, used + grant, pttl, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + pttl}
"""
# Settle on Redis: move the window's count by ARGV[1] (negative gives back) only while the window the
# reservation was taken from lasts; a window that ended (or a new one) is left alone.
_SETTLE = """
local v = redis.call('GET', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
if not v or pttl < 0 then return -1 end
local t = redis.call('TIME')
local ends = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + pttl
if math.abs(ends - tonumber(ARGV[2])) > tonumber(ARGV[3]) then return -1 end
local count = math.max(0, tonumber(v) + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], count, 'KEEPTTL')
return count
"""
# How far apart two readings of one window's end may be (the clock's millisecond steps); a later window
# ends at least its length later, and token windows last an hour.
_SAME_WINDOW_MS = 500


class LimiterUnavailable(Exception):
    """The shared rate-limit storage cannot be reached and this limiter does not fall back."""

    retry_after = 2


PROBE_SECONDS = 1.0
# Redis calls that take longer than this are failures: a hung Redis must not hang every request.
REDIS_TIMEOUT_SECONDS = 1.0


class _Backends:
    """The storages and the outage state that every policy view of one limiter shares."""

    def __init__(self, redis_url: str | None, prefix: str) -> None:
        self.memory = storage_from_string("async+memory://")
        self.memory_strategy = FixedWindowRateLimiter(self.memory)
        self.shared: Any = None
        self.shared_strategy = self.memory_strategy  # replaced below when Redis is configured
        self.redis = Dependency("redis")
        self.retry_at = 0.0
        self.reserve_script: Any = None
        self.settle_script: Any = None
        if redis_url:
            scheme, rest = redis_url.split("://", 1)
            self.shared = storage_from_string(
                f"async+{scheme}://{rest}",
                implementation="redispy",
                key_prefix=prefix,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self.shared_strategy = FixedWindowRateLimiter(self.shared)
            connection = self.shared.bridge.get_connection()
            self.reserve_script = connection.register_script(_RESERVE)
            self.settle_script = connection.register_script(_SETTLE)


class Limiter:
    """Hits quotas for a key. Every quota is hit atomically in the storage; a request counts against
    later quotas only once the earlier ones admitted it."""

    def __init__(
        self, redis_url: str | None = None, *, prefix: str = "inferbox", fallback: bool = False
    ) -> None:
        self._backends = _Backends(redis_url, prefix)
        self.fallback = fallback

    def with_fallback(self, fallback: bool) -> Limiter:
        """The same limiter (same storages, same outage state) with another outage policy."""
        view = copy.copy(self)
        view.fallback = fallback
        return view

    @property
    def shared(self) -> bool:
        return self._backends.shared is not None

    @property
    def redis(self) -> Dependency | None:
        return self._backends.redis if self.shared else None

    async def _run(self, op: Callable[[Any, FixedWindowRateLimiter], Awaitable[T]]) -> T:
        backends = self._backends
        if backends.shared is None:
            return await op(backends.memory, backends.memory_strategy)
        if time.monotonic() >= backends.retry_at:
            try:
                result = await op(backends.shared, backends.shared_strategy)
            except StorageError as exc:
                backends.retry_at = time.monotonic() + PROBE_SECONDS
                backends.redis.failed(exc)
            else:
                backends.redis.ok()
                return result
        if self.fallback:
            return await op(backends.memory, backends.memory_strategy)
        raise LimiterUnavailable("the rate-limit storage (Redis) is unreachable")

    async def ping(self) -> bool:
        """Ask Redis directly (for /health); True without Redis."""
        backends = self._backends
        if backends.shared is None:
            return True
        try:
            healthy = bool(await asyncio.wait_for(backends.shared.check(), REDIS_TIMEOUT_SECONDS * 2))
        except Exception as exc:  # check() may raise what the client raises; all mean "down"
            backends.redis.failed(exc)
            return False
        if healthy:
            backends.redis.ok()
        else:
            backends.redis.failed(ConnectionError("PING failed"))
        return healthy

    async def hit(self, key: str, quotas: Sequence[Quota], cost: int = 1) -> Decision:
        """Spend `cost` of each quota in turn until one refuses. The fixed-window strategy's own hit
        is one increment compared with the amount; doing that increment here keeps its count, so the
        answer's remaining budget costs one more storage call per quota instead of three."""

        async def op(storage: Any, _strategy: FixedWindowRateLimiter) -> Decision:
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

        return await self._run(op)

    async def test(self, key: str, quotas: Sequence[Quota]) -> Decision:
        """Would one more request be admitted? Spends nothing."""

        async def op(_storage: Any, strategy: FixedWindowRateLimiter) -> Decision:
            refused = None
            for quota in quotas:
                if not await strategy.test(quota.item, key, quota.name):
                    refused = quota
                    break
            return Decision(refused is None, await _states(strategy, key, quotas), refused)

        return await self._run(op)

    async def states(self, key: str, quotas: Sequence[Quota]) -> tuple[QuotaState, ...]:
        return await self._run(lambda _storage, strategy: _states(strategy, key, quotas))

    async def reserve(self, key: str, quota: Quota, amount: int) -> Reservation:
        """Take up to `amount` of `quota` for `key`, atomically: what is left when that is less, 0 when
        nothing is. Concurrent reservations never hold together more than the window's amount."""
        amount = max(0, int(amount))
        item = quota.item
        storage_key = item.key_for(key, quota.name)

        async def op(storage: Any, _strategy: FixedWindowRateLimiter) -> Reservation:
            if storage is self._backends.shared:
                grant, count, pttl, ends = await self._script(
                    self._backends.reserve_script,
                    storage_key,
                    [quota.amount, amount, item.get_expiry()],
                )
                reset_after = max(0, math.ceil(pttl / 1000))
            else:
                # In process: take it all, then give back at once what went past the amount. The count
                # only ever overstates what is held, so a racing reservation may get less, never more.
                count = await storage.incr(storage_key, item.get_expiry(), amount=amount)
                excess = min(amount, max(0, count - quota.amount))
                if excess:
                    count = await storage.decr(storage_key, excess)
                grant = amount - excess
                expiry = await storage.get_expiry(storage_key)
                ends = round(expiry * 1000)
                reset_after = max(0, math.ceil(expiry - time.time()))
            return Reservation(
                key, quota, amount, grant, max(0, quota.amount - count), reset_after, int(ends)
            )

        return await self._run(op)

    async def settle(self, reservation: Reservation, used: int) -> QuotaState | None:
        """Count `used` instead of what `reservation` took: give back the rest (or take the overrun)
        in the reservation's window; once that window has ended nothing moves. The window's state
        after, or None when it had ended."""
        delta = max(0, int(used)) - reservation.granted
        quota = reservation.quota
        storage_key = quota.item.key_for(reservation.key, quota.name)

        async def op(storage: Any, _strategy: FixedWindowRateLimiter) -> QuotaState | None:
            if storage is self._backends.shared:
                count = await self._script(
                    self._backends.settle_script,
                    storage_key,
                    [delta, reservation.expires_at, _SAME_WINDOW_MS],
                )
                if count < 0:
                    return None
                expiry = await storage.get_expiry(storage_key)
            else:
                expiry = await storage.get_expiry(storage_key)
                current = await storage.get(storage_key)
                if not current or round(expiry * 1000) != reservation.expires_at:
                    return None
                if delta < 0:
                    count = await storage.decr(storage_key, -delta)
                else:
                    count = await storage.incr(storage_key, quota.item.get_expiry(), amount=delta)
            reset_after = max(0, math.ceil(expiry - time.time()))
            return QuotaState(quota, max(0, quota.amount - count), reset_after)

        if delta == 0:
            (state,) = await self.states(reservation.key, (quota,))
            return state
        return await self._run(op)

    async def _script(self, script: Any, key: str, args: list[int]) -> Any:
        """Run one of our scripts on Redis; its failures read as the storage's own (StorageError)."""
        prefixed = self._backends.shared.bridge.prefixed_key(key)
        try:
            return await asyncio.wait_for(script(keys=[prefixed], args=args), REDIS_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StorageError(exc) from exc

    async def clear(self, key: str, quotas: Sequence[Quota]) -> None:
        async def op(_storage: Any, strategy: FixedWindowRateLimiter) -> None:
            for quota in quotas:
                await strategy.clear(quota.item, key, quota.name)

        await self._run(op)


async def _states(
    strategy: FixedWindowRateLimiter, key: str, quotas: Sequence[Quota]
) -> tuple[QuotaState, ...]:
    now = time.time()
    states = []
    for quota in quotas:
        stats = await strategy.get_window_stats(quota.item, key, quota.name)
        reset_after = max(0, math.ceil(stats.reset_time - now))
        states.append(QuotaState(quota, max(0, stats.remaining), reset_after))
    return tuple(states)
