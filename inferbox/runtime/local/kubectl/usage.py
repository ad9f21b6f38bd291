"""This machine's usage, as `kubectl top node` reports it.

CPU has no figure in the snapshot (it is a rate, so it takes two samples of /proc/stat a moment apart);
memory in use is what the node's exact figures say (capacity less allocatable, which on the local
runtime is the memory available).
"""

from __future__ import annotations

import asyncio
import os

from inferbox.runtime.base import NodeInfo

SAMPLE_SECONDS = 0.25


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


async def node_cpu_millicores(interval: float = SAMPLE_SECONDS) -> int | None:
    """CPU in use on this machine, in millicores, over a short sampling window (None where /proc/stat
    cannot be read)."""
    first = _cpu_times()
    if first is None:
        return None
    await asyncio.sleep(interval)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])
    return round(share * (os.cpu_count() or 1) * 1000)


def memory_in_use(node: NodeInfo) -> tuple[int, int] | None:
    """(used, total) bytes of the node's memory, or None when the node reports no exact figures."""
    total = node.capacity_memory_bytes
    if not total:
        return None
    return total - (node.allocatable_memory_bytes or 0), total
