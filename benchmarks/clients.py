"""`python -m benchmarks.clients`: what the HTTP client that carries calls to replicas costs.

inferbox's control plane and gateway forward every predict to a replica with `ReplicaClient`
(inferbox/runtime/client.py), written in-house because httpx and aiohttp cost too much CPU on a 2-core
machine. This benchmark keeps that claim checkable: it trains the iris model, starts one replica, and for
each client (httpx.AsyncClient, aiohttp.ClientSession, inferbox's ReplicaClient) starts a bare proxy, a
minimal ASGI app under uvicorn (httptools, uvloop, no access log) that forwards every POST to the
replica's `/v1/models/iris:predict` with that client and returns the answer. The proxies do nothing
else, so the client is the only thing that differs between them. Each proxy, then the replica directly
(the ceiling no proxy can beat), is driven with the same load; the load generator, the proxy and the
replica each run in a process of their own.

Numbers are reported, never asserted: they depend on the machine (recorded with them). Every process
started is stopped in a `finally`, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import httpx

from benchmarks import iris, report
from benchmarks.drivers import Driver, Load, pick_driver
from benchmarks.procs import Proc, Processes, free_port, wait_http, wait_until

ROOT = Path(__file__).resolve().parent.parent
MODEL = "iris"
PREDICT_PATH = f"/v1/models/{MODEL}:predict"
HEADERS = {"Content-Type": "application/json"}
# More pooled connections than the load opens, so that no client waits for a free connection.
POOL_SIZE = 256
UPSTREAM_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Client:
    """One client under test: its row id, its label in the table, and the module it needs."""

    id: str
    label: str
    module: str


CLIENTS = (
    Client("httpx", "httpx.AsyncClient", "httpx"),
    Client("aiohttp", "aiohttp.ClientSession", "aiohttp"),
    Client("inferbox", "inferbox ReplicaClient", "inferbox.runtime.client"),
)
DIRECT = "direct"

# -- the proxy (runs in its own process: `--serve-proxy CLIENT`) -------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Forwarder(Protocol):
    """A client wrapped to one call: POST `body` to the replica; (status, body, content type)."""

    async def start(self) -> None: ...

    async def forward(self, body: bytes) -> tuple[int, bytes, bytes]: ...

    async def close(self) -> None: ...


class HttpxForwarder:
    """One shared httpx.AsyncClient with a keep-alive pool larger than the load's connection count."""

    def __init__(self, upstream: str) -> None:
        self.url = upstream + PREDICT_PATH
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        self.client = httpx.AsyncClient(limits=limits, timeout=UPSTREAM_TIMEOUT_S)

    async def forward(self, body: bytes) -> tuple[int, bytes, bytes]:
        assert self.client is not None
        response = await self.client.post(self.url, content=body, headers=HEADERS)
        content_type = response.headers.get("content-type", "application/json").encode("latin-1")
        return response.status_code, response.content, content_type

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


class AiohttpForwarder:
    """One shared aiohttp.ClientSession whose connector pools up to POOL_SIZE connections."""

    def __init__(self, upstream: str) -> None:
        self.url = upstream + PREDICT_PATH
        self.session: Any = None

    async def start(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE),
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
        )

    async def forward(self, body: bytes) -> tuple[int, bytes, bytes]:
        async with self.session.post(self.url, data=body, headers=HEADERS) as response:
            answer = await response.read()
            content_type = response.headers.get("Content-Type", "application/json").encode("latin-1")
            return response.status, answer, content_type

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class InferboxForwarder:
    """inferbox's ReplicaClient, called the way the gateway calls it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.client: Any = None

    async def start(self) -> None:
        from inferbox.runtime.client import ReplicaClient

        self.client = ReplicaClient(timeout=UPSTREAM_TIMEOUT_S)

    async def forward(self, body: bytes) -> tuple[int, bytes, bytes]:
        answer = await self.client.request("POST", self.upstream, PREDICT_PATH, body, HEADERS)
        return answer.status, answer.body, answer.content_type.encode("latin-1")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


FORWARDERS: dict[str, Callable[[str], Forwarder]] = {
    "httpx": HttpxForwarder,
    "aiohttp": AiohttpForwarder,
    "inferbox": InferboxForwarder,
}


def proxy_app(forwarder: Forwarder) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The bare proxy: every POST, whatever its path, goes to the replica's predict through `forwarder`
    and its answer (status, body, content type) comes back as is. Anything else is a 405; a failed call
    is a 502, which the load generator counts as non-2xx."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await forwarder.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await forwarder.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if scope["method"] != "POST":
            status, body, content_type = 405, b"POST only\n", b"text/plain"
        else:
            try:
                status, body, content_type = await forwarder.forward(b"".join(chunks))
            except Exception as exc:
                status, body, content_type = 502, f"{type(exc).__name__}: {exc}\n".encode(), b"text/plain"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_proxy(client: str, upstream: str, port: int) -> int:
    """Run the bare proxy for `client` on 127.0.0.1:`port` until SIGTERM (uvicorn's graceful stop)."""
    import uvicorn

    config = uvicorn.Config(
        proxy_app(FORWARDERS[client](upstream.rstrip("/"))),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        interface="asgi3",
        lifespan="on",
        access_log=False,
        log_level="warning",
        proxy_headers=False,  # skips uvicorn's proxy-headers middleware: nothing but the app runs
        server_header=False,
        backlog=2048,
    )
    uvicorn.Server(config).run()
    return 0


# -- measuring ---------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time `pid` has used so far (/proc/PID/stat); None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the ")" closing the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def versions(driver: Driver) -> dict[str, str | None]:
    """The versions that decide the numbers: Python, the clients, the server stack, the load generator."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("inferbox", "httpx", "httpcore", "aiohttp", "uvicorn", "httptools", "uvloop"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    version = getattr(driver, "version", None)
    out["driver"] = version() if callable(version) else driver.name
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "inferbox/runtime/client.py", "benchmarks/clients.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        out["inferbox commit"] = (head + (" + uncommitted changes" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        out["inferbox commit"] = None
    return out


class ClientBench:
    """One run: the replica, then one proxy at a time, each driven with the same load."""

    def __init__(self, args: argparse.Namespace, driver: Driver, work: Path) -> None:
        self.args = args
        self.driver = driver
        self.work = work
        self.procs = Processes()
        self.rows: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.threads = max(1, min(args.threads, args.connections))
        self.replica: Proc | None = None

    def start_replica(self) -> str:
        """Train the model into the scratch dir and start one replica on a free loopback port."""
        model_dir = self.work / MODEL
        iris.train(sys.executable, model_dir)
        port = free_port()
        argv = [sys.executable, "-m", "inferbox.server", "--name", MODEL, "--framework", "sklearn"]
        argv += ["--model-dir", str(model_dir), "--port", str(port), "--log-level", "warning"]
        self.replica = self.procs.start(
            "replica", argv, log_path=self.work / "logs" / "replica.log", cwd=ROOT
        )
        base_url = f"http://127.0.0.1:{port}"
        wait_http(f"{base_url}/v1/models/{MODEL}", self.replica, timeout=120)
        return base_url

    def start_proxy(self, client: Client, upstream: str) -> tuple[Proc, str]:
        port = free_port()
        argv = [sys.executable, "-m", "benchmarks.clients", "--serve-proxy", client.id]
        argv += ["--upstream", upstream, "--port", str(port)]
        proc = self.procs.start(
            f"proxy-{client.id}", argv, log_path=self.work / "logs" / f"proxy-{client.id}.log", cwd=ROOT
        )
        base_url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            proc.check_running()
            try:
                httpx.get(base_url, timeout=2.0)
            except httpx.HTTPError:
                return False
            return True

        wait_until(answers, timeout=60, what=f"{proc.name} listening on {base_url}")
        return proc, base_url

    def check(self, load: Load) -> Any:
        """One request before the runs: it must answer 200, so that the runs time real predictions."""
        response = httpx.post(load.url, content=load.body, headers=HEADERS, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"{load.url} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def measure(self, row: dict[str, Any], load: Load, proxy: Proc | None) -> None:
        """Check, warm up, then the timed run; the CPU time the proxy and the replica used during it."""
        row["answer"] = self.check(load)
        if self.args.warmup > 0:
            self.driver.run(
                load, connections=self.args.connections, threads=self.threads, duration=self.args.warmup
            )
        pids = {"replica": self.replica.pid if self.replica else None, "proxy": proxy.pid if proxy else None}
        before = {k: cpu_seconds(p) if p else None for k, p in pids.items()}
        result = self.driver.run(
            load, connections=self.args.connections, threads=self.threads, duration=self.args.duration
        )
        after = {k: cpu_seconds(p) if p else None for k, p in pids.items()}
        row.update(result.to_json())
        for key in pids:
            b, a = before[key], after[key]
            used = a - b if a is not None and b is not None else None
            row[f"{key}_cpu_s"] = None if used is None else round(used, 3)
            row[f"{key}_cpu_us_per_request"] = (
                round(used / result.requests * 1e6, 1) if used is not None and result.requests else None
            )
        print(
            f"  {row['label']:<24} {result.rps:>9,.0f} req/s  p50 {result.p50_ms or 0:7.2f} ms"
            f"  p99 {result.p99_ms or 0:7.2f} ms  non-2xx {result.non_2xx}  errors {result.socket_errors}",
            flush=True,
        )

    def run(self) -> None:
        print(f"benchmarks.clients: training {MODEL}, starting one replica", flush=True)
        upstream = self.start_replica()
        body = iris.v1_body()
        print(
            f"benchmarks.clients: {self.driver.name}, {self.args.connections} connections, "
            f"{self.threads} thread(s), {self.args.duration:g} s per run"
            f" after {self.args.warmup:g} s of warm-up",
            flush=True,
        )
        direct: dict[str, Any] = {"id": DIRECT, "label": "direct (no proxy)", "url": upstream + PREDICT_PATH}
        self.rows.append(direct)
        self.measure(direct, Load(upstream + PREDICT_PATH, body), None)
        for client in CLIENTS:
            row: dict[str, Any] = {"id": client.id, "label": client.label}
            self.rows.append(row)
            if not installed(client.module):
                row["skipped"] = "not installed"
                print(f"  {client.label:<24} not installed", flush=True)
                continue
            proxy: Proc | None = None
            try:
                proxy, base_url = self.start_proxy(client, upstream)
                row["url"] = base_url + PREDICT_PATH
                self.measure(row, Load(base_url + PREDICT_PATH, body), proxy)
                proxy.check_running()
            except Exception as exc:
                traceback.print_exc()
                row["error"] = f"{type(exc).__name__}: {exc}"
                self.errors.append(f"{client.id}: {exc}")
                if proxy is not None:
                    print(f"--- {proxy.name} log ---\n{proxy.log_tail()}", file=sys.stderr)
            finally:
                if proxy is not None:
                    self.procs.stop(proxy)  # one proxy at a time: each has the machine to itself
        if self.replica is not None:
            self.replica.check_running()
        add_ratios(self.rows)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each measured row's req/s over the direct ceiling's and over httpx's (None when either is missing)."""
    by_id = {r["id"]: r.get("rps") for r in rows}
    for row in rows:
        rps = row.get("rps")
        for key, base in (("vs_direct", by_id.get(DIRECT)), ("vs_httpx", by_id.get("httpx"))):
            row[key] = round(rps / base, 3) if rps and base else None


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table, one row per client and one for the replica direct."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        "| client | req/s | p50 ms | p99 ms | non-2xx | socket errors | x direct | x httpx"
        " | proxy CPU µs/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if "rps" not in row:
            reason = row.get("skipped") or row.get("error") or "not measured"
            lines.append(f"| {row['label']} | {reason} | | | | | | | |")
            continue
        lines.append(
            f"| {row['label']} | {row['rps']:,.0f} | {num(row['p50_ms'], '.2f')}"
            f" | {num(row['p99_ms'], '.2f')} | {row['non_2xx']} | {row['socket_errors']}"
            f" | {num(row['vs_direct'], '.2f')}"
            f" | {num(row['vs_httpx'], '.1f')} | {num(row.get('proxy_cpu_us_per_request'), ',.0f')} |"
        )
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.clients", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed run (default 10)")
    p.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections of the load (default 32)"
    )
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2; at most --connections)")
    p.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of load before each timed run (default 1)"
    )
    p.add_argument(
        "--driver",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when present (installed with apt-get if missing), else a Python loop",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this path")
    # The proxy's own process, started by the benchmark itself.
    p.add_argument("--serve-proxy", choices=sorted(FORWARDERS), help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_proxy and (not args.upstream or not args.port):
        p.error("--serve-proxy needs --upstream and --port")
    if args.duration <= 0 or args.warmup < 0:
        p.error("--duration must be positive and --warmup not negative")
    if args.connections < 1 or args.threads < 1:
        p.error("--connections and --threads must be at least 1")
    return args


def _command(argv: Sequence[str]) -> str:
    python = sys.executable
    rel = os.path.relpath(python, Path.cwd())
    return shlex.join([python if rel.startswith("..") else rel, "-m", "benchmarks.clients", *argv])


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.serve_proxy:
        return serve_proxy(args.serve_proxy, args.upstream, args.port)
    signal.signal(signal.SIGTERM, _sigterm)
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    driver = pick_driver(args.driver, may_install=args.driver != "python")
    machine = report.machine()
    work = Path(tempfile.mkdtemp(prefix="ibx-clients-"))
    bench = ClientBench(args, driver, work)
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        print("benchmarks.clients: interrupted; stopping what was started", file=sys.stderr, flush=True)
        interrupted = True
    except Exception as exc:
        traceback.print_exc()
        bench.errors.append(f"{type(exc).__name__}: {exc}")
        for proc in bench.procs.history:
            print(f"--- {proc.name} log (last lines) ---\n{proc.log_tail()}", file=sys.stderr)
    finally:
        bench.procs.stop_all()
        if bench.errors:
            print(f"benchmarks.clients: logs kept in {work / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if interrupted:
        return 130

    result = {
        "benchmark": "clients",
        "date": started_at,
        "command": _command(argv),
        "elapsed_s": round(time.monotonic() - started, 1),
        "load": {
            "driver": driver.name,
            "connections": args.connections,
            "threads": bench.threads,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "method": "POST",
            "path": PREDICT_PATH,
            "body": iris.v1_body().decode(),
        },
        "machine": machine,
        "versions": versions(driver),
        "rows": bench.rows,
        "errors": bench.errors,
    }
    print()
    print(markdown_table(bench.rows))
    print(
        f"\n{machine['cores']} cores ({machine['cpu_model']}) shared by {driver.name}, the proxy and the "
        f"replica; {result['elapsed_s']:g} s in all.",
        flush=True,
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"written: {args.json}")
    if bench.errors:
        print("errors:\n  " + "\n  ".join(bench.errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
