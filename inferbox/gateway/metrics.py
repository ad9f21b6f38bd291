"""The gateway's Prometheus metrics, in a registry of its own (served on loopback only: the labels name
every tenant's published models)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# From half a millisecond: the gateway's own share of a call is well under one.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inferbox_gateway_requests",
            "Gateway requests by published model and outcome (admitted, unauthorized, rate_limited, ...)",
            ["namespace", "model", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inferbox_gateway_request_duration_seconds",
            "Time to answer an admitted gateway request",
            ["namespace", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
