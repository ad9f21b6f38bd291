"""A smoke run of the metering half of `python -m benchmarks.llm_gateway` (the time-to-first-token half
starts `inferbox serve` and a replica: it is run by hand, its figures are in docs/benchmarks.md)."""

from __future__ import annotations

from benchmarks.llm_gateway import markdown, metering


def test_the_metering_figures_are_measured_and_printed() -> None:
    cost = metering(20)
    assert {"bound_us", "reserve_settle_memory_us", "stream_64_chunks_us", "reserve_settle_redis_us"} <= set(
        cost
    )
    assert all(value > 0 for value in cost.values())
    ttft = {"direct": {"p50": 1.0, "p99": 2.0}, "gateway": {"p50": 1.5, "p99": 2.5}, "overhead_p50_ms": 0.5}
    table = markdown({"ttft_ms": ttft, "metering_us_per_request": cost})
    assert "| gateway overhead at p50, ms (target ≤ 1) | 0.50 | - |" in table
    assert "reserve + settle, on Redis" in table
