"""This machine as a Kubernetes node, and per-process figures, read from /proc and os.

Everything here is Linux-first and degrades to None / "0" where /proc is missing, so that the control
plane still answers on other systems.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import inferbox
from inferbox.runtime.base import NodeInfo

_PROC = Path("/proc")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_UNITS = (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))


def format_memory(num_bytes: int) -> str:
    """A byte count as Kubernetes shows memory quantities: whole units of the largest binary suffix
    that gives at least 1 (24.0 GiB → "24Gi", 23.5 GiB → "23Gi")."""
    for suffix, size in _UNITS:
        if num_bytes >= size:
            return f"{num_bytes // size}{suffix}"
    return str(max(num_bytes, 0))


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (empty where it cannot be read)."""
    out: dict[str, int] = {}
    try:
        text = (_PROC / "meminfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            factor = 1024 if len(fields) > 1 and fields[1] == "kB" else 1
            out[key.strip()] = int(fields[0]) * factor
    return out


def boot_time() -> datetime | None:
    try:
        for line in (_PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return datetime.fromtimestamp(int(line.split()[1]), UTC)
    except (OSError, ValueError):
        pass
    return None


def node_info(host: str = "127.0.0.1") -> NodeInfo:
    """This machine, the one node of the local runtime."""
    mem = meminfo()
    cpus = str(os.cpu_count() or 1)
    total = mem.get("MemTotal", 0)
    available = mem.get("MemAvailable", mem.get("MemFree", total))
    hostname = socket.gethostname()
    return NodeInfo(
        name=hostname,
        status="Ready",
        version=inferbox.__version__,
        capacity_cpu=cpus,
        capacity_memory=format_memory(total),
        allocatable_cpu=cpus,
        allocatable_memory=format_memory(available),
        created=boot_time(),
        addresses=(host, hostname),
        capacity_memory_bytes=total,
        allocatable_memory_bytes=available,
    )


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses), so that
    index 0 is the state (field 3 in proc(5))."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    end = text.rfind(")")
    if end < 0:
        return None
    return text[end + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (field 22): with the pid, it names one
    process for good, since a recycled pid gets a later start time. None if the process is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def process_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (a zombie holds no sockets or memory)."""
    fields = _stat_fields(pid)
    if fields is None:
        return False
    return fields[0] not in ("Z", "X")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the process, in seconds."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 13:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_rss_bytes(pid: int) -> int | None:
    """Resident set size from /proc/PID/statm."""
    try:
        fields = (_PROC / str(pid) / "statm").read_text().split()
        return int(fields[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None
