"""Helpers the tests share: a control plane served over real HTTP on loopback, in a thread."""

from __future__ import annotations

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from inferbox.app import create_app
from inferbox.assembly import Platform, build
from inferbox.auth.admin import ensure_admin
from inferbox.config import Settings

ADMIN_PASSWORD = "password"
POSTGRES_URL = os.environ.get("INFERBOX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("INFERBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def postgres_url(schema: str) -> str:
    base = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; returns its value, or fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def settings_for(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    base = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        jwt_secret="test-secret-" + secrets.token_hex(16),
        admin_password=ADMIN_PASSWORD,
        # Generous limits: only the rate-limit tests meet them.
        rate_limit_requests=100_000,
        rate_limit_burst=10_000,
        redis_prefix=f"ibx-test-{secrets.token_hex(4)}",
        host="127.0.0.1",
        gateway_port=free_port(),
        # Models trained by the tests live in pytest's temporary directories.
        model_root=Path(tempfile.gettempdir()),
    )
    return base.with_(**overrides)


@dataclass
class RunningServer:
    """One control plane on a loopback port, with clients for the admin and for tenants."""

    platform: Platform
    base_url: str
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def admin_token(self) -> str:
        with self.client() as c:
            r = c.post("/api/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 200, r.text
            return r.json()["token"]

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token())

    def tenant_token(self, tenant: str, *, create: bool = True, **kwargs: Any) -> str:
        if create and not self.platform.tenants.exists(tenant):
            self.platform.tenants.create(tenant)
        return self.platform.tokens.issue_tenant(tenant, **kwargs)

    def tenant(self, tenant: str) -> httpx.Client:
        return self.client(self.tenant_token(tenant))

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


def start_server(settings: Settings) -> RunningServer:
    platform = build(settings)
    ensure_admin(platform.store, settings.admin_username, settings.admin_password)
    app = create_app(platform)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **settings.server_options())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"inferbox-test-{port}", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    return RunningServer(platform, f"http://127.0.0.1:{port}", server, thread)


IRIS_ROW = [6.3, 3.3, 6.0, 2.5]  # an iris row of class 2


def wait_ready(client: httpx.Client, name: str, timeout: float = 30, **params: str) -> dict[str, Any]:
    """Poll a model until it is Ready with a ready replica; fails fast on FailedToLoad."""

    def ready() -> dict[str, Any] | None:
        body = client.get(f"/api/models/{name}", params=params).json()
        if body.get("status") == "FailedToLoad":
            raise AssertionError(f"model failed to load: {body['statusDetails']}")
        return (
            body
            if body.get("status") == "Ready" and body["statusDetails"]["replicas"]["ready"] >= 1
            else None
        )

    return wait_for(ready, timeout=timeout, interval=0.1)


def deploy(srv: RunningServer, model_dir: Any, tenant: str = "tenant-a", name: str = "my-model") -> None:
    """Create a sklearn model through the API and wait until it is Ready."""
    with srv.tenant(tenant) as c:
        r = c.post("/api/models", json={"name": name, "framework": "sklearn", "storageUri": str(model_dir)})
        assert r.status_code == 201, r.text
        wait_ready(c, name)


def publish(
    srv: RunningServer, config: dict[str, Any] | None = None, tenant: str = "tenant-a", name: str = "my-model"
) -> dict[str, Any]:
    """Publish a model through the API; returns the publishedModel (with the full key)."""
    with srv.tenant(tenant) as c:
        r = c.post(f"/api/models/{name}/publish", json={"config": config or {}})
    assert r.status_code == 201, r.text
    return r.json()["publishedModel"]


@contextmanager
def gateway_process(srv: RunningServer, **extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "ADMIN_", "DATABASE_", "REDIS_"))}
    env.update(
        DATABASE_URL=srv.settings.effective_database_url,
        JWT_SECRET=srv.settings.jwt_secret or "",
        INFERBOX_DATA_DIR=str(srv.settings.data_dir),
        GATEWAY_PORT=str(port),
        HOST="127.0.0.1",
        **extra,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferbox", "gateway"], env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=30)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def client_from(base_url: str, address: str, **headers: str) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z is this machine's loopback): a
    real, distinct source address without trusting any forwarded header."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=30,
        transport=httpx.HTTPTransport(local_address=address),
    )


class RedisServer:
    """A redis-server process on a port of its own: stopping it is an outage only the test sees."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed on PATH"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(self._dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=10)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        deadline = time.monotonic() + 5
        while self.answers() and time.monotonic() < deadline:
            time.sleep(0.05)


INFERBOX = [sys.executable, "-m", "inferbox"]


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "ADMIN_", "DATABASE_", "REDIS_"))}
    env.update(INFERBOX_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


@contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**env, "PORT": str(port), "HOST": "127.0.0.1", "GATEWAY_PORT": str(free_port())}
    proc = subprocess.Popen(
        [*INFERBOX, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"inferbox serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=90, interval=0.1)  # a cold start on a busy machine
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
