"""What one replica process uses and serves: the readings behind `kubectl top` and the autoscaler.

Two sources, both read once per autoscaler tick:
- /proc, for memory (RSS) and CPU (millicores: CPU seconds used since the previous sample, per second);
- the model server's `/inferbox/stats` on the replica's own port: its request count, the seconds its
  requests were in flight (summed over concurrent requests) and how many are in flight now. Between two
  readings, Δbusy/Δt is the average concurrency and Δrequests/Δt the requests per second, the two
  metrics the local runtime scales on.

Kept apart from `Replica` because these are rates over time, with state of their own (the previous
reading), and have nothing to do with starting, restarting and stopping the process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from inferbox.runtime.local.node import process_cpu_seconds, process_rss_bytes

STATS_PATH = "/inferbox/stats"


@dataclass(frozen=True, slots=True)
class StatsReading:
    """One successful read of `/inferbox/stats`."""

    # The requests the process has answered since it started.
    requests: int
    # It saw requests since the previous reading, or holds some now.
    active: bool


class UsageMeter:
    """The usage readings of one replica; `reset()` when a new process starts in it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self.cpu_millicores: int | None = None
        self.memory_bytes: int | None = None
        self.concurrency = 0.0
        self.rps = 0.0
        self.inflight = 0
        self._cpu_prev: tuple[float, float] | None = None
        self._stats_prev: tuple[float, int, float] | None = None

    def reset(self) -> None:
        """A new process: the previous readings were of another one (the last values stay shown)."""
        self._cpu_prev = None
        self._stats_prev = None

    def sample(self, pid: int | None, now: float) -> None:
        """Refresh memory (RSS) and CPU (millicores since the previous sample) from /proc."""
        if pid is None:
            self.cpu_millicores = None
            self.memory_bytes = None
            return
        self.memory_bytes = process_rss_bytes(pid)
        cpu = process_cpu_seconds(pid)
        if cpu is not None and self._cpu_prev is not None and now > self._cpu_prev[0]:
            self.cpu_millicores = max(0, round((cpu - self._cpu_prev[1]) / (now - self._cpu_prev[0]) * 1000))
        self._cpu_prev = None if cpu is None else (now, cpu)

    async def poll(self, base_url: str, now: float, timeout: float) -> StatsReading | None:
        """Read `/inferbox/stats` at `base_url` and update concurrency (Δbusy/Δt) and rps
        (Δrequests/Δt). None when the stats could not be read."""
        try:
            response = await self._http.get(base_url + STATS_PATH, timeout=timeout)
            data = response.json()
            requests = int(data["requests"])
            busy = float(data["busySeconds"])
            self.inflight = int(data.get("inflight", 0))
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        prev, self._stats_prev = self._stats_prev, (now, requests, busy)
        if prev is None or now <= prev[0] or requests < prev[1]:
            return StatsReading(requests, self.inflight > 0)
        dt = now - prev[0]
        self.concurrency = max(busy - prev[2], 0.0) / dt
        self.rps = (requests - prev[1]) / dt
        if not math.isfinite(self.concurrency):
            self.concurrency = 0.0
        return StatsReading(requests, requests > prev[1] or self.inflight > 0)
