"""`python -m benchmarks.faults`: inferbox under load while its parts fail, one fault after another.

Everything runs on loopback and everything started is stopped in a `finally`: a fresh PostgreSQL
database (dropped at the end), a redis-server of its own on a free port, `inferbox serve` (the control
plane, its in-process gateway and the local runtime) and one standalone `inferbox gateway` sharing the
store and Redis. It deploys a tiny iris SVC in tenant-a, publishes it with every limit at the maximum (no
request is refused by quota), and drives the published URL through both gateways with an asyncio load
generator while it injects, in order, each fault followed by a recovery window:

  a. SIGKILL of the model's replica (the supervisor restarts it);
  b. SIGTERM of `inferbox serve`, then a new one on the same ports, store and data dir;
  c. SIGKILL of `inferbox serve` (its replicas die with it), started again at once;
  d. Redis stopped for a while, then started on the same port;
  e. PostgreSQL refusing connections for a while (`ALLOW_CONNECTIONS false`, sessions terminated).

Every request is recorded (gateway, outcome, latency); every fault's timing, and each gateway's time to
recover: from the end of the fault (the restart, for serve) to the first 200 of a request sent after it
and after the gateway's last failed request (a dying replica may still answer a few 200s before the
failures begin; `first_200_s` in the JSON is the first 200 alone).
At the end the 200s answered ("admitted") are compared with the publication's `usage.totalRequests`
("counted"). What inferbox promises, and this checks: no request hangs; nothing in the store is lost;
counted <= admitted, short by at most what the in-process gateway had not flushed at the SIGKILL (the
200s it answered in the last LOSS_WINDOW seconds before it); every gateway recovers after every fault;
a killed serve leaves no replica running. Exit code 1 when one of these does not hold, 2 when the run
could not be set up or was interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from benchmarks import iris
from benchmarks.inferbox_setup import HUGE, INFERBOX, SCRUB, TENANT, Inferbox
from benchmarks.procs import Proc, Processes, cmdline, descendants, free_port, wait_http, wait_until

MODEL = "iris"
ROW = [6.3, 3.3, 6.0, 2.5]  # an iris row of class 2
BODY = {"instances": [ROW]}
ANSWER = {"predictions": [2]}
GATEWAYS = ("serve", "standalone")
# The documented loss at a SIGKILL of serve is "at most the last ~1 s" of its gateway's counts (it
# flushes every second); the bound allows half a second more for a flush that was under way.
LOSS_WINDOW = 1.5
# A worker whose request failed waits this long before the next one, so that a refused port does not
# become a busy loop on a small machine (Retry-After is not honoured: it would blur recovery times).
PAUSE_AFTER_FAILURE = 0.05
# A gateway counts as recovered once its requests have succeeded for this long (live, to move on).
STABLE_SECONDS = 0.5
POSTGRES_URL = os.environ.get("INFERBOX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached the run: stop everything and exit 2 (a BaseException, so that no
    `except Exception` on the way swallows it)."""


@dataclass(frozen=True)
class Plan:
    """How long and how hard: outage length and calm after each recovery, workers, timeouts."""

    mode: str
    fault_seconds: float
    concurrency: int
    request_timeout: float = 10.0
    baseline_seconds: float = 1.0
    recovery_deadline: float = 45.0

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        small = bool(args.small)
        return cls(
            mode="small" if small else "default",
            fault_seconds=args.duration_per_fault or (1.5 if small else 10.0),
            concurrency=args.concurrency or (8 if small else 16),
            baseline_seconds=1.0 if small else 3.0,
            recovery_deadline=30.0 if small else 60.0,
        )


# --------------------------------------------------------------------------------------------------
# What the load saw


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: which gateway, when it was sent and answered (seconds since the load began), and its
    outcome: the status code ("wrong-answer" for a 200 without the model's answer), or "hung" (timed
    out), "connection" (refused, reset, cut off) or "error" (any other transport error)."""

    gateway: str
    start: float
    end: float
    outcome: str

    @property
    def ok(self) -> bool:
        return self.outcome == "200"

    @property
    def latency(self) -> float:
        return self.end - self.start


class Recorder:
    """The samples, appended by the load thread as requests end (hence in order of `end`), read by the
    main thread while it injects faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def all(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def answered_since(self, since: float) -> list[Sample]:
        """The samples answered at or after `since` (walking back from the newest only that far)."""
        with self._lock:
            i = len(self._samples)
            while i > 0 and self._samples[i - 1].end >= since:
                i -= 1
            return self._samples[i:]


def first_ok(samples: Iterable[Sample], gateway: str, since: float) -> float | None:
    """When `gateway` first answered 200 to a request sent at or after `since` (a dying process may still
    give such an answer before the failures begin: see `recovered_at`)."""
    return min((s.end for s in samples if s.gateway == gateway and s.ok and s.start >= since), default=None)


def recovered_at(samples: Iterable[Sample], gateway: str, since: float, until: float) -> float | None:
    """When `gateway` recovered after `since`: the answer to its first request that got 200 and was sent
    after every one of its requests that failed. Only requests sent after `since` and answered before
    `until` count, so that neither the fault itself nor the next one counts against the recovery."""
    mine = [s for s in samples if s.gateway == gateway and s.start >= since and s.end < until]
    last_failure = max((s.start for s in mine if not s.ok), default=-math.inf)
    return min((s.end for s in mine if s.ok and s.start > last_failure), default=None)


def classify(exc: BaseException) -> str:
    """The outcome of a request that got no HTTP answer."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "hung"
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return "connection"
    return "error"


class LoadGenerator:
    """`concurrency` workers spread over the gateways, each sending one request after the other, in a
    thread with its own event loop (the faults are injected with blocking calls meanwhile). Each request
    has `request_timeout` seconds in all; a 200 must carry the model's answer."""

    def __init__(self, urls: dict[str, str], api_key: str, plan: Plan, recorder: Recorder, t0: float) -> None:
        self.urls = urls
        self.api_key = api_key
        self.plan = plan
        self.recorder = recorder
        self.t0 = t0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def clock(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="faults-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Let every worker finish its request, then end the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.plan.request_timeout + 10)
            self._thread = None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # reported with the results; the run then fails
            self.error = f"{type(exc).__name__}: {exc}"

    async def _run(self) -> None:
        names = list(self.urls)
        per_gateway = math.ceil(self.plan.concurrency / len(names))
        limits = httpx.Limits(max_connections=per_gateway, max_keepalive_connections=per_gateway)
        clients = {
            name: httpx.AsyncClient(
                timeout=self.plan.request_timeout, limits=limits, headers={"X-API-Key": self.api_key}
            )
            for name in names
        }
        try:
            workers = [
                self._worker(names[i % len(names)], clients[names[i % len(names)]])
                for i in range(self.plan.concurrency)
            ]
            await asyncio.gather(*workers)
        finally:
            for client in clients.values():
                await client.aclose()

    async def _worker(self, gateway: str, client: httpx.AsyncClient) -> None:
        url = self.urls[gateway]
        while not self._stopping.is_set():
            start = self.clock()
            outcome = await self._one(client, url)
            self.recorder.add(Sample(gateway, start, self.clock(), outcome))
            if outcome != "200":
                await asyncio.sleep(PAUSE_AFTER_FAILURE)

    async def _one(self, client: httpx.AsyncClient, url: str) -> str:
        try:
            async with asyncio.timeout(self.plan.request_timeout):
                response = await client.post(url, json=BODY)
        except (TimeoutError, httpx.HTTPError) as exc:
            return classify(exc)
        if response.status_code == 200 and response.json() != ANSWER:
            return "wrong-answer"
        return str(response.status_code)


def stats(samples: Iterable[Sample]) -> dict[str, Any]:
    """Requests, 200s, the other outcomes by kind, hung, and latency (p50, max) of a set of samples."""
    chosen = list(samples)
    outcomes = Counter(s.outcome for s in chosen)
    latencies = sorted(s.latency for s in chosen)
    return {
        "requests": len(chosen),
        "ok": outcomes["200"],
        "failures": {k: v for k, v in sorted(outcomes.items()) if k != "200"},
        "hung": outcomes["hung"],
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
    }


def by_gateway(samples: Sequence[Sample]) -> dict[str, Any]:
    """`stats` of all the samples and of each gateway's."""
    out: dict[str, Any] = {"all": stats(samples)}
    for gateway in GATEWAYS:
        out[gateway] = stats(s for s in samples if s.gateway == gateway)
    return out


# --------------------------------------------------------------------------------------------------
# What the run starts: a database, Redis, serve, a gateway


@dataclass
class Database:
    """A PostgreSQL database of the run's own on the server of `admin_url` (a database it may connect
    to for CREATE / ALTER / DROP DATABASE)."""

    admin_url: str
    name: str = field(default_factory=lambda: f"ibx_faults_{os.getpid()}_{secrets.token_hex(3)}")
    created: bool = False

    @property
    def url(self) -> str:
        """The database's URL, for DATABASE_URL and for reading the store."""
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{self.name}", parts.query, ""))

    def _admin(self, sql: str, params: Sequence[Any] = ()) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql, params)  # type: ignore[arg-type]

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False

    def block(self) -> None:
        """Refuse new connections and end the current ones: the store is unreachable."""
        self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.name,))

    def unblock(self) -> None:
        self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


# What "nothing lost" compares before and after: the rows that define tenant-a, its model, the
# publication and its key (no timestamps that the run is allowed to move).
STORE_QUERIES = {
    "tenants": "SELECT name, status FROM tenants ORDER BY name",
    "models": (
        "SELECT namespace, name, framework, storage_uri, min_replicas, max_replicas, generation, port "
        "FROM models ORDER BY namespace, name"
    ),
    "publications": (
        "SELECT p.id, m.namespace, m.name, p.external_path, p.status, p.rate_limiting::text, "
        "p.authentication::text FROM publications p JOIN models m ON m.id = p.model_id ORDER BY p.id"
    ),
    "api_keys": (
        "SELECT publication_id, lookup_id, masked, expires_at IS NULL AS active FROM api_keys ORDER BY id"
    ),
}


def store_rows(db: Database) -> dict[str, list[list[Any]]]:
    """The rows of STORE_QUERIES, read straight from the database."""
    out: dict[str, list[list[Any]]] = {}
    with psycopg.connect(db.url, connect_timeout=10) as conn:
        for table, sql in STORE_QUERIES.items():
            out[table] = [list(row) for row in conn.execute(sql).fetchall()]  # type: ignore[arg-type]
    return out


def store_problems(before: dict[str, list[list[Any]]], after: dict[str, list[list[Any]]]) -> list[str]:
    """Rows present before and missing (or changed) after, and the counts the run relies on."""
    problems = [
        f"{table}: {row} is gone"
        for table, rows in before.items()
        for row in rows
        if row not in after.get(table, [])
    ]
    for when, rows in (("before", before), ("after", after)):
        if [r[0] for r in rows["tenants"]] != [TENANT]:
            problems.append(f"{when}: tenants are {rows['tenants']}, not just {TENANT}")
        if len(rows["models"]) != 1 or len(rows["publications"]) != 1:
            problems.append(f"{when}: {len(rows['models'])} models, {len(rows['publications'])} publications")
        if len(rows["api_keys"]) != 1:
            problems.append(f"{when}: {len(rows['api_keys'])} API keys, not exactly one")
    return problems


class Redis:
    """A redis-server of the run's own: its port stays the same across restarts."""

    def __init__(self, procs: Processes, logs: Path) -> None:
        self.procs = procs
        self.logs = logs
        self.port = free_port()
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is needed on PATH")
        self.starts += 1
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = self.procs.start(
            f"redis-{self.starts}",
            [binary, *args, "--dir", str(self.logs)],
            log_path=self.logs / f"redis-{self.starts}.log",
        )
        wait_until(self.answers, timeout=10, interval=0.02, what=f"redis on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class Stack:
    """`inferbox serve` (restartable on the same ports, store and data dir) and a standalone gateway."""

    def __init__(self, procs: Processes, work: Path, db: Database, redis: Redis) -> None:
        self.procs = procs
        self.work = work
        self.logs = work / "logs"
        self.port, self.serve_gateway_port, self.gateway_port = free_port(), free_port(), free_port()
        self.admin_password = "faults-" + secrets.token_hex(8)
        self.starts = 0
        self.serve: Proc | None = None
        self.gateway: Proc | None = None
        self.api: Inferbox | None = None
        common = {
            "DATABASE_URL": db.url,
            "REDIS_URL": redis.url,
            "JWT_SECRET": "faults-" + secrets.token_urlsafe(32),
            "HOST": "127.0.0.1",
            "RATE_LIMIT_REQUESTS": str(HUGE),
            "RATE_LIMIT_BURST": str(HUGE),
            "PYTHONUNBUFFERED": "1",
        }
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in SCRUB and k != "VIRTUAL_ENV" and not k.startswith(("INFERBOX_", "JWT_", "ADMIN_"))
        }
        self.serve_env = {
            **inherited,
            **common,
            "INFERBOX_DATA_DIR": str(work / "serve-data"),
            "INFERBOX_MODEL_ROOT": str(work),
            "ADMIN_PASSWORD": self.admin_password,
            "PORT": str(self.port),
            "GATEWAY_PORT": str(self.serve_gateway_port),
            "INFERBOX_GATEWAY_URL": f"http://127.0.0.1:{self.serve_gateway_port}",
        }
        self.gateway_env = {
            **inherited,
            **common,
            "INFERBOX_DATA_DIR": str(work / "gateway-data"),
            "GATEWAY_PORT": str(self.gateway_port),
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gateway_urls(self) -> dict[str, str]:
        """The published model's predict URL at each gateway."""
        path = f"/models/{MODEL}/predict"
        return {
            "serve": f"http://127.0.0.1:{self.serve_gateway_port}{path}",
            "standalone": f"http://127.0.0.1:{self.gateway_port}{path}",
        }

    def launch_serve(self) -> Proc:
        """Start `inferbox serve` without waiting for it (the restart time is the launch)."""
        self.starts += 1
        self.serve = self.procs.start(
            f"serve-{self.starts}",
            [*INFERBOX, "serve"],
            log_path=self.logs / f"serve-{self.starts}.log",
            env=self.serve_env,
            cwd=self.work,
        )
        if self.api is not None:
            self.api.proc = self.serve
        return self.serve

    def wait_serve(self, timeout: float = 60.0) -> None:
        assert self.serve is not None
        wait_http(f"{self.base_url}/health", self.serve, timeout=timeout)

    def launch_gateway(self) -> None:
        """Start the standalone gateway (once serve has migrated the store) without waiting for it."""
        self.gateway = self.procs.start(
            "gateway",
            [*INFERBOX, "gateway"],
            log_path=self.logs / "gateway.log",
            env=self.gateway_env,
            cwd=self.work,
        )

    def wait_gateway(self) -> None:
        assert self.gateway is not None
        wait_http(f"http://127.0.0.1:{self.gateway_port}/health", self.gateway, timeout=60)

    def wait_routes(self, timeout: float = 30.0) -> None:
        """Each gateway knows the publication: a call without a key is refused with 401, not 404 (a
        standalone gateway loads new routes once a second). Refused calls are not counted as usage."""
        for url in self.gateway_urls().values():

            def known(url: str = url) -> bool:
                return httpx.post(url, json=BODY, timeout=10).status_code == 401

            wait_until(known, timeout=timeout, interval=0.1, what=f"the route at {url}")

    def bootstrap(self, model_dir: Path) -> str:
        """Admin login, tenant-a, its token, the model deployed and Ready, published; returns the key."""
        assert self.serve is not None
        with httpx.Client(base_url=self.base_url, timeout=30) as anon:
            login = anon.post("/api/admin/login", json={"username": "admin", "password": self.admin_password})
            if login.status_code != 200:
                raise RuntimeError(f"admin login: {login.status_code} {login.text}")
        admin = httpx.Client(
            base_url=self.base_url, timeout=30, headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        created = admin.post("/api/admin/tenants", json={"name": TENANT})
        if created.status_code != 201:
            admin.close()
            raise RuntimeError(f"creating {TENANT}: {created.status_code} {created.text}")
        token = subprocess.run(
            [*INFERBOX, "token", "--tenant", TENANT],
            env=self.serve_env,
            cwd=self.work,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        tenant = httpx.Client(
            base_url=self.base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        self.api = Inferbox(
            self.serve,
            self.serve_env,
            self.base_url,
            f"http://127.0.0.1:{self.serve_gateway_port}",
            self.work / "serve-data",
            admin,
            tenant,
            token,
        )
        self.api.deploy(MODEL, f"file://{model_dir}", min_replicas=1, max_replicas=1)
        self.api.wait_ready(MODEL, timeout=60)
        return str(self.api.publish(MODEL)["apiKey"])

    def close(self) -> None:
        if self.api is not None:
            self.api.close()


# --------------------------------------------------------------------------------------------------
# The faults


@dataclass
class Fault:
    """One injected fault: when it began and ended (seconds since the load began), what was seen while
    it was injected, and each gateway's time to recover after `ended`."""

    name: str
    label: str
    began: float
    ended: float
    details: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, float | None] = field(default_factory=dict)
    window_end: float | None = None


def replica_pid(api: Inferbox) -> int | None:
    """The pid of the model's ready replica, from the admin's `kubectl get pods -o json` (the local
    runtime reports each replica process as a pod whose containerID is `local://PID`)."""
    response = api.admin.post("/api/admin/kubectl", json={"command": f"get pods -n {TENANT} -o json"})
    if response.status_code != 200:
        return None
    for pod in json.loads(response.json()["result"]).get("items", []):
        if not pod["metadata"]["name"].startswith(f"{MODEL}-predictor-"):
            continue
        for status in pod["status"].get("containerStatuses", []):
            container = status.get("containerID", "")
            if status.get("ready") and container.startswith("local://"):
                return int(container.removeprefix("local://"))
    return None


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class FaultRun:
    """Injects the faults in order while the load runs, and waits for each gateway to recover."""

    def __init__(self, stack: Stack, redis: Redis, db: Database, plan: Plan, recorder: Recorder) -> None:
        self.stack = stack
        self.redis = redis
        self.db = db
        self.plan = plan
        self.recorder = recorder
        self.t0 = time.monotonic()
        self.faults: list[Fault] = []

    def clock(self) -> float:
        return time.monotonic() - self.t0

    @property
    def api(self) -> Inferbox:
        assert self.stack.api is not None
        return self.stack.api

    def steps(self) -> list[Callable[[], Fault]]:
        return [
            self.kill_replica,
            lambda: self.restart_serve(signal.SIGTERM),
            lambda: self.restart_serve(signal.SIGKILL),
            self.redis_outage,
            self.store_outage,
        ]

    def run(self) -> None:
        """Baseline, then each fault, its recovery and a calm window as long as a fault."""
        self.wait_for_load(self.clock(), "baseline")
        time.sleep(self.plan.baseline_seconds)
        for step in self.steps():
            fault = step()
            self.faults.append(fault)
            print(f"faults: {fault.label}: injected ({fault.ended - fault.began:.2f} s)", flush=True)
            fault.recovery = self.wait_recovered(fault.ended)
            shown = ", ".join(f"{g} {'-' if s is None else f'{s:.2f} s'}" for g, s in fault.recovery.items())
            print(f"faults: {fault.label}: recovered: {shown}", flush=True)
            time.sleep(self.plan.fault_seconds)

    def wait_for_load(self, since: float, what: str) -> None:
        """Both gateways answer 200 (the load reached them)."""
        recovered = self.wait_recovered(since)
        if None in recovered.values():
            raise RuntimeError(f"{what}: the gateways do not answer 200: {recovered}")

    def wait_recovered(self, since: float) -> dict[str, float | None]:
        """Waits until each gateway recovered (`recovered_at`) and stayed so for STABLE_SECONDS, or for
        the plan's deadline; returns each one's seconds from `since` (None: not recovered). The report
        computes the final figures again over the whole window after the fault."""
        found: dict[str, float | None] = dict.fromkeys(GATEWAYS)
        deadline = time.monotonic() + self.plan.recovery_deadline
        while time.monotonic() < deadline:
            recent, now = self.recorder.answered_since(since), self.clock()
            found = {g: recovered_at(recent, g, since, math.inf) for g in GATEWAYS}
            if all(at is not None and now - at >= STABLE_SECONDS for at in found.values()):
                break
            time.sleep(0.05)
        return {g: None if at is None else round(at - since, 3) for g, at in found.items()}

    # -- (a) the replica ------------------------------------------------------------------------------
    def kill_replica(self) -> Fault:
        """SIGKILL the model's replica, checked to be a model server below serve; the supervisor starts
        a new process in its place."""
        serve = self.stack.serve
        assert serve is not None
        pid = wait_until(lambda: replica_pid(self.api), timeout=30, what="a ready replica")
        if pid not in descendants(serve.pid) or "inferbox.server" not in cmdline(pid):
            raise RuntimeError(f"pid {pid} is not a model server of serve {serve.pid}: {cmdline(pid)}")
        serve.remember_descendants()
        began = self.clock()
        os.kill(pid, signal.SIGKILL)
        fault = Fault("replica_sigkill", "(a) SIGKILL of the replica", began, began, {"killed_pid": pid})
        replaced = wait_until(
            lambda: (new := replica_pid(self.api)) and new != pid and new,
            timeout=self.plan.recovery_deadline,
            what="a new ready replica",
        )
        fault.details.update(new_pid=replaced, new_replica_ready_s=round(self.clock() - began, 3))
        serve.remember_descendants()
        return fault

    # -- (b), (c) serve -----------------------------------------------------------------------------------
    def restart_serve(self, sig: signal.Signals) -> Fault:
        """Signal serve, wait for it to exit, start a new one (at once), and check that the old one's
        replicas are gone."""
        old = self.stack.serve
        assert old is not None
        old.remember_descendants()
        replicas = [p for p in old.seen if running(p)]
        name = "sigterm" if sig == signal.SIGTERM else "sigkill"
        label = "(b) SIGTERM of serve, restart" if sig == signal.SIGTERM else "(c) SIGKILL of serve, restart"
        began = self.clock()
        os.kill(old.pid, sig)
        code = old.popen.wait(timeout=90)
        exited = self.clock()
        self.stack.launch_serve()
        ended = self.clock()
        details: dict[str, Any] = {"exit_code": code, "exit_s": round(exited - began, 3)}
        details.update(self.replicas_gone(replicas, since=began))
        # The old process's leftovers (none, when the policy holds) are stopped; it leaves the list.
        self.stack.procs.stop(old)
        self.stack.wait_serve()
        self.api.wait_ready(MODEL, timeout=self.plan.recovery_deadline)
        details["api_ready_s"] = round(self.clock() - ended, 3)
        assert self.stack.serve is not None
        self.stack.serve.remember_descendants()
        return Fault(f"serve_{name}", label, began, ended, details)

    def replicas_gone(self, pids: list[int], *, since: float) -> dict[str, Any]:
        """Waits (up to 15 s) for the old serve's processes to end; names those that did not."""
        deadline = time.monotonic() + 15
        left = list(pids)
        while left and time.monotonic() < deadline:
            left = [p for p in left if running(p)]
            time.sleep(0.02)
        return {
            "old_processes": pids,
            "old_processes_gone_s": None if left else round(self.clock() - since, 3),
            "old_processes_left_running": left,
        }

    # -- (d) Redis ------------------------------------------------------------------------------------
    def redis_outage(self) -> Fault:
        """Stop Redis, keep it down for a fault's length (the API is asked once meanwhile), start it
        again on the same port; the fault ends when it answers PING."""
        began = self.clock()
        self.redis.stop()
        api_status = self.api.tenant.get(f"/api/models/{MODEL}").status_code
        time.sleep(self.plan.fault_seconds)
        self.redis.start()
        ended = self.clock()
        return Fault("redis_outage", "(d) Redis down", began, ended, {"api_status_during": api_status})

    # -- (e) PostgreSQL -------------------------------------------------------------------------------
    def store_outage(self) -> Fault:
        """Make the database refuse connections for a fault's length (the API is asked once
        meanwhile), then take connections again."""
        began = self.clock()
        self.db.block()
        try:
            api_status = self.api.tenant.get(f"/api/models/{MODEL}/publish").status_code
            time.sleep(self.plan.fault_seconds)
        finally:
            self.db.unblock()
        ended = self.clock()
        return Fault(
            "store_outage", "(e) PostgreSQL unreachable", began, ended, {"api_status_during": api_status}
        )


# --------------------------------------------------------------------------------------------------
# The end: usage, the store, the report


def settled_usage(api: Inferbox, timeout: float = 30.0) -> int:
    """`usage.totalRequests` once it stopped moving for 2.5 s (more than two flushes of each gateway)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, float] | None = None
    while time.monotonic() < deadline:
        response = api.tenant.get(f"/api/models/{MODEL}/publish")
        if response.status_code == 200:
            value = int(response.json()["usage"]["totalRequests"])
            if last is None or last[0] != value:
                last = (value, time.monotonic())
            elif time.monotonic() - last[1] >= 2.5:
                return value
        time.sleep(0.25)
    raise TimeoutError(f"usage.totalRequests did not settle within {timeout:g} s (last: {last})")


def key_works(stack: Stack, key: str) -> dict[str, Any]:
    """The key after the run: a 200 with the model's answer on each gateway, valid for the API."""
    out: dict[str, Any] = {}
    for gateway, url in stack.gateway_urls().items():
        response = httpx.post(url, json=BODY, headers={"X-API-Key": key}, timeout=10)
        out[gateway] = response.status_code == 200 and response.json() == ANSWER
    response = httpx.post(f"{stack.base_url}/api/validate-api-key", json={"apiKey": key}, timeout=10)
    out["api"] = response.status_code == 200 and response.json().get("valid") is True
    return out


def loss_bound(samples: Sequence[Sample], faults: Sequence[Fault]) -> int:
    """The 200s the serve's gateway answered in the LOSS_WINDOW seconds before its SIGKILL (answers
    that arrived after the kill and before the restart were sent before the kill too)."""
    kill = next((f for f in faults if f.name == "serve_sigkill"), None)
    if kill is None:
        return 0
    return sum(
        1 for s in samples if s.gateway == "serve" and s.ok and kill.began - LOSS_WINDOW <= s.end < kill.ended
    )


def fault_report(fault: Fault, samples: Sequence[Sample]) -> dict[str, Any]:
    """A fault's times, details and recovery, with the requests answered in its window (the fault and
    the recovery after it, up to the next fault) and those answered while it was injected: a request
    belongs where it ended, so that one cut off by the fault counts for the fault."""
    end = fault.window_end if fault.window_end is not None else math.inf
    window = [s for s in samples if fault.began <= s.end < end]
    during = [s for s in samples if fault.began <= s.end < fault.ended]
    return {
        "name": fault.name,
        "label": fault.label,
        "began_s": round(fault.began, 3),
        "ended_s": round(fault.ended, 3),
        "window_end_s": None if fault.window_end is None else round(fault.window_end, 3),
        "recovery_s": fault.recovery,
        "first_200_s": {
            g: None if (at := first_ok(samples, g, fault.ended)) is None else round(at - fault.ended, 3)
            for g in GATEWAYS
        },
        "details": fault.details,
        "requests": by_gateway(window),
        "during": by_gateway(during),
    }


def build_report(
    plan: Plan,
    run: FaultRun,
    samples: Sequence[Sample],
    load_end: float,
    usage: dict[str, Any],
    store: dict[str, Any],
    errors: list[str],
) -> dict[str, Any]:
    """Everything the run measured, and the list of broken promises (`problems`)."""
    for i, fault in enumerate(run.faults):
        fault.window_end = run.faults[i + 1].began if i + 1 < len(run.faults) else load_end
        fault.recovery = {
            g: None
            if (at := recovered_at(samples, g, fault.ended, fault.window_end)) is None
            else round(at - fault.ended, 3)
            for g in GATEWAYS
        }
    first = run.faults[0].began if run.faults else load_end
    faults = [fault_report(f, samples) for f in run.faults]
    totals = by_gateway(samples)
    problems = list(errors)
    if totals["all"]["hung"]:
        problems.append(
            f"{totals['all']['hung']} requests hung (no answer within {plan.request_timeout:g} s)"
        )
    problems += [f"store: {p}" for p in store["lost"]]
    problems += [
        f"key after the run does not work at {where}" for where, ok in store["key_works"].items() if not ok
    ]
    if usage.get("difference") is not None and not 0 <= usage["difference"] <= usage["loss_bound"]:
        problems.append(
            f"usage: admitted {usage['admitted']} - counted {usage['counted']} = {usage['difference']}, "
            f"outside [0, {usage['loss_bound']}]"
        )
    for fault in run.faults:
        problems += [
            f"{fault.label}: the {g} gateway did not recover" for g, s in fault.recovery.items() if s is None
        ]
        if fault.details.get("old_processes_left_running"):
            problems.append(f"{fault.label}: left running: {fault.details['old_processes_left_running']}")
    return {
        "mode": plan.mode,
        "settings": {
            "fault_seconds": plan.fault_seconds,
            "concurrency": plan.concurrency,
            "request_timeout_s": plan.request_timeout,
            "baseline_s": plan.baseline_seconds,
            "recovery_deadline_s": plan.recovery_deadline,
            "loss_window_s": LOSS_WINDOW,
        },
        "load_seconds": round(load_end, 3),
        "baseline": by_gateway([s for s in samples if s.end < first]),
        "faults": faults,
        "totals": totals,
        "hung": totals["all"]["hung"],
        "usage": usage,
        "store": store,
        "problems": problems,
        "samples": {
            "fields": ["gateway", "start_s", "latency_ms", "outcome"],
            "rows": [[s.gateway, round(s.start, 4), round(s.latency * 1000, 2), s.outcome] for s in samples],
        },
    }


def _failures(stat: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in stat["failures"].items()) or "-"


def _recovery(fault: dict[str, Any]) -> str:
    return " / ".join("-" if s is None else f"{s:.2f}" for s in (fault["recovery_s"][g] for g in GATEWAYS))


def markdown(report: dict[str, Any]) -> str:
    """One row per fault (and the baseline), totals, and the usage comparison."""
    lines = [
        "| fault | window s | requests | 200 | failures | hung | max ms | recovery s (serve / standalone) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    base = report["baseline"]["all"]
    rows = [("baseline", None, base, "")]
    for fault in report["faults"]:
        span = (fault["window_end_s"] or fault["ended_s"]) - fault["began_s"]
        rows.append((fault["label"], span, fault["requests"]["all"], _recovery(fault)))
    rows.append(("**total**", report["load_seconds"], report["totals"]["all"], ""))
    for label, span, stat, recovery in rows:
        shown_span = "" if span is None else f"{span:.1f}"
        lines.append(
            f"| {label} | {shown_span} | {stat['requests']:,} | {stat['ok']:,} | {_failures(stat)} | "
            f"{stat['hung']} | {stat['max_ms'] or 0:,.0f} | {recovery} |"
        )
    usage = report["usage"]
    lines += [
        "",
        f"admitted (200s) {usage.get('admitted')}, counted (usage.totalRequests) {usage.get('counted')}, "
        f"admitted - counted {usage.get('difference')}, documented bound {usage.get('loss_bound')} "
        f"(200s of serve's gateway in the {LOSS_WINDOW:g} s before its SIGKILL)",
        f"store: {'nothing lost' if not report['store']['lost'] else report['store']['lost']}; "
        f"key works: {report['store']['key_works']}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="short windows for CI (well under a minute)")
    p.add_argument(
        "--duration-per-fault",
        type=float,
        default=None,
        help="seconds each outage lasts and the load runs on after each recovery (1.5 with --small, else 10)",
    )
    p.add_argument(
        "--concurrency", type=int, default=None, help="requests in flight (8 with --small, else 16)"
    )
    p.add_argument("--json", type=Path, default=None, help="write the whole report as JSON here")
    p.add_argument(
        "--keep", action="store_true", help="keep the scratch dir (the processes' logs) afterwards"
    )
    p.add_argument(
        "--postgres", default=POSTGRES_URL, help="a loopback PostgreSQL database to create one beside"
    )
    args = p.parse_args(argv)
    if args.duration_per_fault is not None and args.duration_per_fault <= 0:
        p.error("--duration-per-fault must be positive")
    if args.concurrency is not None and args.concurrency < 2:
        p.error("--concurrency must be at least 2 (one worker per gateway)")
    if urlsplit(args.postgres).hostname not in LOOPBACK:
        p.error("--postgres must be on loopback")
    return args


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """SIGTERM and SIGINT ignored meanwhile: a second Ctrl-C must not cut the clean-up short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_all(stack: Stack, db: Database, redis: Redis, work: Path) -> str:
    """The database, Redis, the model file, serve, the standalone gateway, tenant-a and the published
    model (known to both gateways); returns the publication's API key."""
    db.create()
    redis.start()
    model_dir = work / "iris"
    # Training and the start-ups overlap: on a small machine each of them is seconds of imports.
    with ThreadPoolExecutor(1) as pool:
        trained = pool.submit(iris.train, sys.executable, model_dir)
        stack.launch_serve()
        stack.wait_serve()
        trained.result()
    stack.launch_gateway()
    key = stack.bootstrap(model_dir)
    stack.wait_gateway()
    stack.wait_routes()
    print(f"faults: serve {stack.base_url}, gateways {stack.gateway_urls()}", flush=True)
    return key


def attempt(errors: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """`fn()`, or None with the error noted (the report is still written)."""
    try:
        return fn()
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return None


def run(plan: Plan, postgres: str, work: Path) -> dict[str, Any]:
    """Set up, load, inject, measure, and stop everything started, whatever happens."""
    procs = Processes()
    db = Database(postgres)
    redis = Redis(procs, work / "logs")
    stack = Stack(procs, work, db, redis)
    load: LoadGenerator | None = None
    try:
        began = time.monotonic()
        key = start_all(stack, db, redis, work)
        setup_s = round(time.monotonic() - began, 1)
        before = store_rows(db)
        recorder = Recorder()
        fault_run = FaultRun(stack, redis, db, plan, recorder)
        load = LoadGenerator(stack.gateway_urls(), key, plan, recorder, fault_run.t0)
        load.start()
        errors: list[str] = []
        attempt(errors, "fault injection stopped", fault_run.run)
        load.stop()
        load_end = fault_run.clock()
        if load.error:
            errors.append(f"load generator: {load.error}")
        samples = recorder.all()
        counted = attempt(errors, "reading usage", lambda: settled_usage(fault_run.api))
        admitted = sum(1 for s in samples if s.ok)
        usage = {
            "admitted": admitted,
            "counted": counted,
            "difference": None if counted is None else admitted - counted,
            "loss_bound": loss_bound(samples, fault_run.faults),
        }
        after = store_rows(db)
        store = {
            "before": before,
            "after": after,
            "lost": store_problems(before, after),
            "key_works": attempt(errors, "trying the key", lambda: key_works(stack, key)) or {"all": False},
        }
        report = build_report(plan, fault_run, samples, load_end, usage, store, errors)
        report["setup_s"] = setup_s
        if report["problems"]:
            for proc in procs.history:
                print(f"--- {proc.name} ({proc.log_path}):\n{proc.log_tail(15)}", flush=True)
        return report
    finally:
        with shielded():
            if load is not None:
                load.stop()
            stack.close()
            procs.stop_all()
            db.drop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.of(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)
    started, started_at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    print(
        f"faults: {plan.mode} run, {plan.fault_seconds:g} s per fault, {plan.concurrency} in flight",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="inferbox-faults-"))
    try:
        report = run(plan, args.postgres, work)
    except Interrupted as exc:
        print(f"faults: interrupted by {exc}; everything started was stopped", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("faults: the run could not be completed; everything started was stopped", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"faults: logs kept in {work / 'logs'}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["started_at"] = started_at
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(markdown(report), flush=True)
    print(f"faults: {report['elapsed_s']} s in all ({report['setup_s']} s of set-up)", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    for problem in report["problems"]:
        print(f"faults: PROBLEM: {problem}", flush=True)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
