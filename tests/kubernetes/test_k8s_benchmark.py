"""The Kubernetes listing benchmark runs, and its claim holds: the listing is answered from the watch
cache, so no call of GET /api/models reaches the API server."""

from __future__ import annotations

from benchmarks import kubernetes_list


def test_the_listing_benchmark_runs_and_never_calls_the_api_server() -> None:
    result = kubernetes_list.measure(total=20, calls=5)
    assert result["models_listed"] == 20
    assert result["calls"] == 5
    assert result["api_server_requests_during_calls"] == 0
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["max_ms"]
