"""Token reservations on their own, in process and on Redis: a reservation takes what fits, concurrent
ones never hold more than the window, a settle gives back the unused part at once, and only into the
window it was taken from."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
from support import REDIS_URL, free_port

from inferbox.ratelimit import Limiter, LimiterUnavailable, Quota

BUDGET = Quota("tokensPerHour", 1000, 3600)


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[Limiter]:
    if request.param == "memory":
        yield Limiter()
    else:
        yield Limiter(REDIS_URL, prefix=f"ibx-test-res-{secrets.token_hex(4)}")


def test_a_reservation_takes_what_fits_and_nothing_once_the_window_is_spent(limiter: Limiter) -> None:
    async def scenario() -> None:
        first = await limiter.reserve("k", BUDGET, 700)
        assert (first.granted, first.remaining) == (700, 300)
        assert 3590 <= first.reset_after <= 3600
        second = await limiter.reserve("k", BUDGET, 700)
        assert (second.granted, second.remaining) == (300, 0)
        third = await limiter.reserve("k", BUDGET, 10)
        assert (third.granted, third.remaining) == (0, 0)
        # Another key has its own window.
        assert (await limiter.reserve("other", BUDGET, 10)).granted == 10

    asyncio.run(scenario())


def test_concurrent_reservations_never_hold_more_than_the_window(limiter: Limiter) -> None:
    async def scenario() -> None:
        grants = await asyncio.gather(*(limiter.reserve("k", BUDGET, 150) for _ in range(20)))
        assert sum(g.granted for g in grants) == BUDGET.amount
        assert all(0 <= g.granted <= 150 for g in grants)

    asyncio.run(scenario())


def test_settle_gives_back_the_unused_part_at_once_and_counts_an_overrun(limiter: Limiter) -> None:
    async def scenario() -> None:
        held = await limiter.reserve("k", BUDGET, 600)
        state = await limiter.settle(held, 100)
        assert state is not None and state.remaining == 900
        (now,) = await limiter.states("k", (BUDGET,))
        assert now.remaining == 900
        # What was given back is reservable again right away: no phantom refusals.
        assert (await limiter.reserve("k", BUDGET, 900)).granted == 900
        over = await limiter.reserve("k2", BUDGET, 10)
        state = await limiter.settle(over, 25)  # a replica that overran: its tokens still count
        assert state is not None and state.remaining == 975
        unchanged = await limiter.reserve("k3", BUDGET, 10)
        state = await limiter.settle(unchanged, 10)
        assert state is not None and state.remaining == 990

    asyncio.run(scenario())


def test_settle_never_gives_back_into_a_later_window(limiter: Limiter) -> None:
    async def scenario() -> None:
        short = Quota("tokensPerHour", 100, 1)
        held = await limiter.reserve("k", short, 80)
        assert held.granted == 80
        # The window ends while the request runs; a new one opens and is spent.
        while (await limiter.states("k", (short,)))[0].remaining < 100:
            await asyncio.sleep(0.05)
        fresh = await limiter.reserve("k", short, 100)
        assert fresh.granted == 100
        assert await limiter.settle(held, 0) is None
        (state,) = await limiter.states("k", (short,))
        assert state.remaining == 0  # the old reservation's 80 did not land in the new window

    asyncio.run(scenario())


def test_reserve_refuses_while_redis_is_down() -> None:
    async def scenario() -> None:
        limiter = Limiter(f"redis://127.0.0.1:{free_port()}/0", prefix="t")
        with pytest.raises(LimiterUnavailable):
            await limiter.reserve("k", BUDGET, 10)

    asyncio.run(scenario())
