"""Prometheus metrics and the in-flight statistics behind ``/inferbox/stats``.

Everything lives on objects built per app (its own ``CollectorRegistry``), never in module globals,
so several apps can coexist in one process (tests) and nothing leaks between them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: Latency buckets in seconds: online inference lives well under the client's default 5 ms floor.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


class InflightStats:
    """Counts inference requests and integrates how many were in flight over time.

    ``busy_seconds`` is the integral of the in-flight count over time, so between two polls
    ``Δbusy / Δt`` is the average concurrency and ``Δrequests / Δt`` the completed request rate. Only
    predict/infer requests count: health checks and scrapes would otherwise measure themselves.
    Updated on the event loop only, so no locking is needed.
    """

    __slots__ = ("_busy", "_since", "inflight", "requests")

    def __init__(self) -> None:
        self.inflight = 0
        self.requests = 0
        self._busy = 0.0
        self._since = time.monotonic()

    def enter(self) -> None:
        now = time.monotonic()
        self._busy += self.inflight * (now - self._since)
        self._since = now
        self.inflight += 1

    def leave(self) -> None:
        now = time.monotonic()
        self._busy += self.inflight * (now - self._since)
        self._since = now
        self.inflight -= 1
        self.requests += 1

    def busy_seconds(self) -> float:
        return self._busy + self.inflight * (time.monotonic() - self._since)


class _Histogram:
    """A histogram recorded as plain per-bucket counts; cumulated only when scraped."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last bucket is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = list(accumulate(self.counts))
        labels = [str(floatToGoString(bound)) for bound in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        return list(zip(labels, cumulative, strict=True))


class Metrics(Collector):
    """The replica's Prometheus metrics.

    * ``inferbox_requests_total{endpoint, status}``: every HTTP request, by route name and status.
    * ``inferbox_request_duration_seconds{endpoint}``: latency histogram, by route name.
    * ``inferbox_batch_size``: rows per framework call.
    * ``inferbox_batch_requests``: requests per framework call.
    * ``inferbox_inflight_requests``: inference requests in flight.

    Recording is a few integer additions on the event loop thread, which is the only thread that
    records or scrapes; prometheus-client's own metric objects take a lock per increment, which costs
    more than the rest of a health check. The registry is this object's own, so exposition is
    prometheus-client's.
    """

    def __init__(self, stats: InflightStats) -> None:
        self._stats = stats
        self._requests: dict[tuple[str, int], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._batch_rows = _Histogram(BATCH_BUCKETS)
        self._batch_requests = _Histogram(BATCH_BUCKETS)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = _Histogram(LATENCY_BUCKETS)
        latency.observe(seconds)

    def observe_batch(self, rows: int, requests: int) -> None:
        self._batch_rows.observe(rows)
        self._batch_requests.observe(requests)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "inferbox_requests", "HTTP requests by endpoint and status.", labels=["endpoint", "status"]
        )
        for (endpoint, status), count in sorted(self._requests.items()):
            requests.add_metric([endpoint, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "inferbox_request_duration_seconds",
            "Time from request arrival to response, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, histogram in sorted(self._latency.items()):
            latency.add_metric([endpoint], histogram.buckets(), histogram.total)
        yield latency
        for name, doc, histogram in (
            ("inferbox_batch_size", "Rows per framework call.", self._batch_rows),
            ("inferbox_batch_requests", "Requests per framework call.", self._batch_requests),
        ):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], histogram.buckets(), histogram.total)
            yield family
        yield GaugeMetricFamily(
            "inferbox_inflight_requests", "Inference requests in flight.", value=self._stats.inflight
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
