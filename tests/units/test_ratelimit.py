"""The Limiter on its own: fixed windows, exact counts, the headers, and what happens when Redis is not
there (a refusal, or in-process windows for the limiter that falls back)."""

from __future__ import annotations

import asyncio

import pytest
from support import free_port

from inferbox.ratelimit import Limiter, LimiterUnavailable, Quota

QUOTAS = (Quota("burst", 3, 1), Quota("minute", 5, 60))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_window_admits_its_amount_exactly_and_counts_later_quotas_only_when_admitted() -> None:
    async def scenario() -> None:
        limiter = Limiter()
        decisions = [await limiter.hit("k", QUOTAS) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[-1].refused_by == QUOTAS[0]
        # The refused request did not spend the minute's budget: 3 of 5 are gone, not 4.
        minute = next(s for s in decisions[-1].states if s.quota.name == "minute")
        assert minute.remaining == 2
        headers = decisions[-1].headers("minute")
        assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "2"
        assert headers["RateLimit-Policy"] == '"burst";q=3;w=1, "minute";q=5;w=60'
        assert int(headers["Retry-After"]) >= 1

    run(scenario())


def test_concurrent_hits_never_admit_more_than_the_amount() -> None:
    async def scenario() -> None:
        limiter = Limiter()
        quota = (Quota("minute", 25, 60),)
        decisions = await asyncio.gather(*(limiter.hit("k", quota) for _ in range(100)))
        assert sum(d.allowed for d in decisions) == 25

    run(scenario())


def test_test_spends_nothing_and_clear_resets() -> None:
    async def scenario() -> None:
        limiter = Limiter()
        for _ in range(3):
            assert (await limiter.test("k", QUOTAS)).allowed
        await limiter.hit("k", QUOTAS, cost=3)
        assert not (await limiter.test("k", QUOTAS)).allowed
        await limiter.clear("k", QUOTAS)
        assert (await limiter.hit("k", QUOTAS)).allowed

    run(scenario())


def test_without_redis_the_gateway_limiter_refuses_and_the_api_one_falls_back() -> None:
    async def scenario() -> None:
        nowhere = f"redis://127.0.0.1:{free_port()}/0"
        refusing = Limiter(nowhere, prefix="t")
        with pytest.raises(LimiterUnavailable):
            await refusing.hit("k", QUOTAS)
        assert refusing.redis is not None and refusing.redis.view()["status"] == "down"
        falling_back = refusing.with_fallback(True)
        decisions = [await falling_back.hit("k", QUOTAS) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert not await falling_back.ping()

    run(scenario())
