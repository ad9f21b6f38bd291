"""The scaling decision, with synthetic time: no processes, no sleeping."""

from __future__ import annotations

from inferbox.runtime.local.autoscaler import Autoscaler, Bounds
from inferbox.runtime.local.replica import backoff_delay


def make(delay: float = 30.0, to_zero: float = 60.0) -> Autoscaler:
    return Autoscaler(scale_down_delay=delay, scale_to_zero_after=to_zero, window=2.0)


def test_scales_up_at_once_to_demand_over_target() -> None:
    scaler = make()
    bounds = Bounds(min_replicas=1, max_replicas=10, target=2)
    assert scaler.recommend(0.0, 0.5, bounds, last_request_at=0.0) == 1
    # A burst: the short window averages 0.5 and 11.5 → 6 / 2 = 3 replicas at the next tick.
    assert scaler.recommend(0.5, 11.5, bounds, last_request_at=0.5) == 3
    assert scaler.recommend(1.0, 12.0, bounds, last_request_at=1.0) == 4


def test_exact_multiples_do_not_add_a_replica() -> None:
    scaler = make()
    bounds = Bounds(1, 10, 1)
    assert scaler.recommend(0.0, 3.0000000001, bounds, 0.0) == 3


def test_clamped_to_max_and_to_min() -> None:
    bounds = Bounds(min_replicas=2, max_replicas=3, target=1)
    assert make().recommend(0.0, 50.0, bounds, 0.0) == 3
    assert make().recommend(0.0, 0.0, bounds, 0.0) == 2


def test_max_zero_still_allows_one_replica() -> None:
    assert make().recommend(0.0, 5.0, Bounds(0, 0, 1), 0.0) == 1


def test_scales_down_only_after_the_delay() -> None:
    scaler = make(delay=10.0)
    bounds = Bounds(1, 10, 1)
    now = 0.0
    assert scaler.recommend(now, 5.0, bounds, now) == 5
    # Demand drops to 1: the recommendation holds at 5 while the delay window still remembers it.
    now = 3.0
    assert scaler.recommend(now, 1.0, bounds, now) == 5
    now = 9.9
    assert scaler.recommend(now, 1.0, bounds, now) == 5
    now = 10.5
    assert scaler.recommend(now, 1.0, bounds, now) == 1


def test_scales_to_zero_only_with_min_zero_and_after_the_idle_window() -> None:
    scaler = make(delay=1.0, to_zero=5.0)
    bounds = Bounds(0, 3, 1)
    assert scaler.recommend(10.0, 0.0, bounds, last_request_at=8.0) == 1
    assert scaler.recommend(12.9, 0.0, bounds, last_request_at=8.0) == 1
    assert scaler.recommend(13.0, 0.0, bounds, last_request_at=8.0) == 0
    # Never seen a request at all: idle.
    assert make(to_zero=5.0).recommend(0.0, 0.0, bounds, last_request_at=None) == 0
    # minReplicas 1 never goes to zero, however idle.
    assert make(to_zero=5.0).recommend(100.0, 0.0, Bounds(1, 3, 1), last_request_at=0.0) == 1


def test_rps_demand_uses_the_same_rule() -> None:
    scaler = make()
    bounds = Bounds(1, 10, 100)
    assert scaler.recommend(0.0, 250.0, bounds, 0.0) == 3


def test_reset_forgets_the_history() -> None:
    scaler = make(delay=100.0)
    bounds = Bounds(1, 10, 1)
    assert scaler.recommend(0.0, 8.0, bounds, 0.0) == 8
    scaler.reset()
    assert scaler.demand() == 0.0
    assert scaler.recommend(1.0, 1.0, bounds, 1.0) == 1


def test_crash_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
