"""The gRPC load driver: a bounded asyncio ``grpc.aio`` loop (no gRPC load generator such as ``ghz`` is
on the package registries).

N workers, each on its own channel (its own TCP connection, as wrk's connections are), call one unary
method in a loop with one fixed, pre-serialised request for a fixed time; requests and responses stay
bytes (no protobuf work on the client), so the driver spends its CPU in gRPC itself. It reports the same
numbers as the HTTP drivers (`LoadResult`); a non-OK status counts as non-2xx, a broken connection or a
deadline as a socket error. The same loop drives every server, so ratios between servers are fair even
where the loop itself is the bottleneck (it is CPU-bound on a 2-core machine).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import grpc.aio

from benchmarks.drivers import LoadResult, percentile

NAME = "grpc.aio loop"
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class GrpcLoad:
    """One gRPC endpoint under load: `method` on `address` with the same serialised request every time."""

    address: str  # host:port
    method: str  # /package.Service/Method
    request: bytes


def _identity(value: bytes) -> bytes:
    return value


def call_once(load: GrpcLoad) -> bytes:
    """One call before the runs; raises unless it is OK (the runs must time real predictions)."""

    async def once() -> bytes:
        async with grpc.aio.insecure_channel(load.address) as channel:
            stub = channel.unary_unary(
                load.method, request_serializer=_identity, response_deserializer=_identity
            )
            return bytes(await stub(load.request, timeout=30))

    return asyncio.run(once())


def run(load: GrpcLoad, *, connections: int, duration: float) -> LoadResult:
    """`connections` workers for `duration` seconds; the latency of every call is kept for percentiles."""
    return asyncio.run(_run(load, connections, duration))


async def _run(load: GrpcLoad, connections: int, duration: float) -> LoadResult:
    latencies: list[float] = []
    failures = {"status": 0, "transport": 0}
    # A local subchannel pool per channel: otherwise channels to one address share one connection.
    channels = [
        grpc.aio.insecure_channel(load.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    try:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))
        started = time.perf_counter()
        deadline = started + duration

        async def worker(channel: grpc.aio.Channel) -> None:
            stub = channel.unary_unary(
                load.method, request_serializer=_identity, response_deserializer=_identity
            )
            while True:
                began = time.perf_counter()
                if began >= deadline:
                    return
                try:
                    await stub(load.request, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        failures["transport"] += 1
                    else:
                        failures["status"] += 1
                    continue
                latencies.append((time.perf_counter() - began) * 1000.0)

        await asyncio.gather(*(worker(c) for c in channels))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    latencies.sort()
    done = len(latencies)
    return LoadResult(
        driver=NAME,
        connections=connections,
        threads=1,
        duration_s=round(elapsed, 3),
        requests=done,
        rps=round(done / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=_rounded(percentile(latencies, 50)),
        p99_ms=_rounded(percentile(latencies, 99)),
        non_2xx=failures["status"],
        socket_errors=failures["transport"],
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
