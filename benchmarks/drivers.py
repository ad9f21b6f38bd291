"""Load drivers: `wrk` when it is installed, a small asyncio/httpx loop otherwise.

Both post one fixed body to one URL over N keep-alive connections for a fixed time and report the same
numbers (requests/s, p50, p99, non-2xx answers, socket errors), so that the report can say which one
produced them. wrk is the reference: the Python loop is itself CPU-bound well below what the servers can
do, so its numbers only keep the smoke test meaningful on machines without wrk.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class Load:
    """One HTTP endpoint under load: the same POST body and headers for every request."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass
class LoadResult:
    """What one timed run measured. Latencies are in milliseconds."""

    driver: str
    connections: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    non_2xx: int
    socket_errors: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Driver(Protocol):
    """Runs a load for `duration` seconds over `connections` connections (and `threads` threads)."""

    name: str

    def run(self, load: Load, *, connections: int, threads: int, duration: float) -> LoadResult: ...


# -- wrk -------------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = re.compile(r"^\s*([\d.]+)(us|ms|s|m|h)\s*$")


def _ms(text: str) -> float:
    """wrk prints durations as `850.00us`, `1.23ms`, `2.00s`; returns milliseconds."""
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """The numbers of `wrk --latency` output: requests, seconds, req/s, p50/p99 (ms), non-2xx and socket
    errors. wrk counts every status >= 400 under "Non-2xx or 3xx responses" and omits the line when there
    are none; "Socket errors" likewise appears only when some happened."""
    result: dict[str, Any] = {
        "requests": None,
        "duration_s": None,
        "rps": None,
        "p50_ms": None,
        "p99_ms": None,
        "non_2xx": 0,
        "socket_errors": 0,
    }
    in_distribution = False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("Latency Distribution"):
            in_distribution = True
            continue
        if in_distribution:
            parts = stripped.split()
            if len(parts) == 2 and parts[0].endswith("%"):
                if parts[0] == "50%":
                    result["p50_ms"] = _ms(parts[1])
                elif parts[0] == "99%":
                    result["p99_ms"] = _ms(parts[1])
                continue
            in_distribution = False
        if match := re.match(r"^(\d+) requests in ([\d.]+)(us|ms|s|m|h)", stripped):
            result["requests"] = int(match.group(1))
            result["duration_s"] = _ms(match.group(2) + match.group(3)) / 1000.0
        elif match := re.match(r"^Requests/sec:\s+([\d.]+)", stripped):
            result["rps"] = float(match.group(1))
        elif match := re.match(r"^Non-2xx or 3xx responses:\s+(\d+)", stripped):
            result["non_2xx"] = int(match.group(1))
        elif stripped.startswith("Socket errors:"):
            result["socket_errors"] = sum(int(n) for n in re.findall(r"\d+", stripped))
    for key in ("p50_ms", "p99_ms"):
        if result[key] is not None:
            result[key] = round(result[key], 4)
    missing = [k for k in ("requests", "rps", "p50_ms", "p99_ms") if result[k] is None]
    if missing:
        raise ValueError(f"wrk output lacks {', '.join(missing)}:\n{output}")
    return result


def lua_script(load: Load) -> str:
    """The wrk script that turns every request into `load`'s method, body and headers."""

    def quoted(value: str) -> str:
        # Lua's %q-style escaping for a double-quoted string.
        out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return f'"{out}"'

    def quoted_bytes(value: bytes) -> str:
        # Printable ASCII as is (but for the quote and the backslash), every other byte as Lua's \ddd:
        # binary bodies (the V2 binary tensor extension) hold any byte.
        special = {34: '\\"', 92: "\\\\"}
        out = "".join(special.get(b) or (chr(b) if 32 <= b < 127 else f"\\{b:03d}") for b in value)
        return f'"{out}"'

    lines = [f"wrk.method = {quoted(load.method)}", f"wrk.body = {quoted_bytes(load.body)}"]
    headers = {"Content-Type": "application/json", **load.headers}
    lines += [f"wrk.headers[{quoted(k)}] = {quoted(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


class WrkDriver:
    """wrk with a Lua script for the body and headers, and `--latency` for the percentiles."""

    name = "wrk"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def version(self) -> str:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "wrk"

    def run(self, load: Load, *, connections: int, threads: int, duration: float) -> LoadResult:
        seconds = max(1, round(duration))
        with tempfile.TemporaryDirectory(prefix="ibx-wrk-") as tmp:
            script = Path(tmp) / "post.lua"
            script.write_text(lua_script(load))
            argv = [
                self.binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(script),
                load.url,
            ]
            # Bounded: wrk stops itself after -d; the margin covers start-up and a slow last request.
            done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        numbers = parse_wrk(done.stdout)
        return LoadResult(
            driver=self.name,
            connections=connections,
            threads=threads,
            duration_s=numbers["duration_s"] or float(seconds),
            requests=numbers["requests"],
            rps=numbers["rps"],
            p50_ms=numbers["p50_ms"],
            p99_ms=numbers["p99_ms"],
            non_2xx=numbers["non_2xx"],
            socket_errors=numbers["socket_errors"],
        )


# -- the Python fallback ---------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank percentile `q` (0..100) of an ascending list; None when it is empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class PythonDriver:
    """N asyncio tasks, one per keep-alive connection, each posting back to back for `duration` seconds.

    A bare HTTP/1.1 client on asyncio streams (request bytes built once; answers read by Content-Length
    or chunks): httpx's pool costs several times more CPU per request, and this loop shares the machine
    with the server it measures. `threads` is ignored: one event loop drives every connection."""

    name = "python"

    def version(self) -> str:
        return "asyncio HTTP/1.1 loop"

    def run(self, load: Load, *, connections: int, threads: int, duration: float) -> LoadResult:
        return asyncio.run(self._run(load, connections, duration))

    async def _run(self, load: Load, connections: int, duration: float) -> LoadResult:
        url = httpx.URL(load.url)
        if url.scheme != "http":
            raise ValueError(f"the Python driver speaks plain http only, not {load.url}")
        host, port = url.host, url.port or 80
        headers = {"Host": f"{host}:{port}", "Content-Type": "application/json", **load.headers}
        headers["Content-Length"] = str(len(load.body))
        target = url.raw_path.decode("ascii")
        head = f"{load.method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (head + "\r\n").encode("latin-1") + load.body
        latencies: list[float] = []
        counts = {"ok": 0, "bad": 0, "errors": 0}
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            writer: asyncio.StreamWriter | None = None
            try:
                while time.perf_counter() < deadline:
                    try:
                        if writer is None:
                            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                        began = time.perf_counter()
                        writer.write(request)
                        status, keep = await asyncio.wait_for(_read_response(reader), 10)
                    except (
                        TimeoutError,
                        OSError,
                        asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError,
                        ValueError,
                    ):
                        counts["errors"] += 1
                        if writer is not None:
                            writer.close()
                        writer = None
                        await asyncio.sleep(0.01)
                        continue
                    latencies.append((time.perf_counter() - began) * 1000.0)
                    counts["ok" if status < 400 else "bad"] += 1
                    if not keep:
                        writer.close()
                        writer = None
            finally:
                if writer is not None:
                    writer.close()

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
        latencies.sort()
        requests = counts["ok"] + counts["bad"]
        return LoadResult(
            driver=self.name,
            connections=connections,
            threads=1,
            duration_s=round(elapsed, 3),
            requests=requests,
            rps=requests / elapsed if elapsed > 0 else 0.0,
            p50_ms=_rounded(percentile(latencies, 50)),
            p99_ms=_rounded(percentile(latencies, 99)),
            non_2xx=counts["bad"],
            socket_errors=counts["errors"],
        )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 answer (body discarded); its status and whether the connection stays open."""
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    keep = parts[0] != b"HTTP/1.0"
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif key == b"connection":
            keep = b"close" not in value.lower()
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()  # ends with the connection
        keep = False
    return status, keep


# -- choosing one ----------------------------------------------------------------------------------------


def install_wrk() -> str | None:
    """`apt-get install -y wrk` (through sudo when not root); the binary's path, or None when that failed."""
    apt = shutil.which("apt-get")
    if apt is None:
        return None
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            return None
        prefix = [sudo, "-n"]
    print("benchmarks: wrk is missing; apt-get install -y wrk", flush=True)
    try:
        subprocess.run([*prefix, apt, "install", "-y", "wrk"], check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"benchmarks: could not install wrk ({exc})", flush=True)
        return None
    return shutil.which("wrk")


def pick_driver(choice: str, *, may_install: bool) -> Driver:
    """`wrk`, `python`, or `auto`: wrk when present (installed first when `may_install`), else Python."""
    if choice == "python":
        return PythonDriver()
    binary = shutil.which("wrk") or (install_wrk() if may_install else None)
    if binary:
        return WrkDriver(binary)
    if choice == "wrk":
        raise SystemExit("benchmarks: --driver wrk, but wrk is not installed and could not be installed")
    print("benchmarks: wrk not available; using the Python load loop (numbers are client-bound)", flush=True)
    return PythonDriver()
