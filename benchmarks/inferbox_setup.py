"""inferbox under test: `inferbox serve` as a subprocess, driven through its API like the README's quick
start (admin login, tenant, `inferbox token`, deploy, publish).

The server gets its own data dir (a fresh SQLite store) and limits high enough that neither the API's
limiter (RATE_LIMIT_*) nor the publication's (rateLimiting) refuses the benchmark's traffic. HOST is set
to loopback so that a benchmark run opens nothing to the network; inferbox's other settings are its
defaults, except INFERBOX_SCALE_TO_ZERO_SECONDS=1 so that the scale-from-zero measure does not wait 60 s.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.procs import Proc, Processes, free_port, wait_http, wait_until

# The venv's console script (what the README runs), or the module when the script is not beside python.
_SCRIPT = Path(sys.executable).parent / "inferbox"
INFERBOX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "inferbox"]
ADMIN_PASSWORD = "bench-" + secrets.token_hex(8)
TENANT = "tenant-a"
HUGE = 1_000_000_000
# Variables of the caller's environment that would point the benchmark's inferbox at shared state.
SCRUB = (
    "DATABASE_URL",
    "REDIS_URL",
    "KUBECONFIG",
    "JWT_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "INFERBOX_RUNTIME",
    "INFERBOX_GATEWAY_URL",
    "CORS_ORIGINS",
    "LOG_LEVEL",
)


@dataclass
class Inferbox:
    """A running `inferbox serve`, with an admin client and a tenant-a client."""

    proc: Proc
    env: dict[str, str]
    base_url: str
    gateway_url: str
    data_dir: Path
    admin: httpx.Client
    tenant: httpx.Client
    tenant_token: str

    @property
    def db_path(self) -> Path:
        return self.data_dir / "inferbox.db"

    def close(self) -> None:
        self.admin.close()
        self.tenant.close()

    def deploy(self, name: str, storage_uri: str, *, min_replicas: int = 1, max_replicas: int = 1) -> None:
        """POST /api/models (201 expected)."""
        body = {
            "name": name,
            "framework": "sklearn",
            "storageUri": storage_uri,
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
        }
        response = self.tenant.post("/api/models", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"creating {name}: {response.status_code} {response.text}")

    def model(self, name: str) -> dict[str, Any]:
        response = self.tenant.get(f"/api/models/{name}")
        response.raise_for_status()
        return dict(response.json())

    def wait_ready(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the model is Ready with a ready replica; fails at once on FailedToLoad."""

        def ready() -> dict[str, Any] | None:
            self.proc.check_running()
            body = self.model(name)
            if body.get("status") == "FailedToLoad":
                raise RuntimeError(f"{name} failed to load: {body.get('statusDetails')}")
            return body if is_ready(body) else None

        return dict(wait_until(ready, timeout=timeout, interval=0.05, what=f"{name} Ready"))

    def delete(self, name: str) -> None:
        response = self.tenant.delete(f"/api/models/{name}")
        if response.status_code != 200:
            raise RuntimeError(f"deleting {name}: {response.status_code} {response.text}")

    def publish(self, name: str) -> dict[str, Any]:
        """Publish with every limit at HUGE; returns publishedModel (it carries the full API key)."""
        limits = {
            "requestsPerMinute": HUGE,
            "requestsPerHour": HUGE,
            "tokensPerHour": HUGE,
            "burstLimit": HUGE,
        }
        response = self.tenant.post(f"/api/models/{name}/publish", json={"config": {"rateLimiting": limits}})
        if response.status_code != 201:
            raise RuntimeError(f"publishing {name}: {response.status_code} {response.text}")
        return dict(response.json()["publishedModel"])


def is_ready(body: dict[str, Any]) -> bool:
    """Ready, with at least one ready replica (what a caller can use right away)."""
    replicas = (body.get("statusDetails") or {}).get("replicas") or {}
    return body.get("status") == "Ready" and int(replicas.get("ready") or 0) >= 1


def start(procs: Processes, work: Path) -> Inferbox:
    """Start `inferbox serve` in `work`, log in as the admin, create tenant-a and get its token."""
    port, gateway_port = free_port(), free_port()
    data_dir = work / "inferbox-data"
    env = {k: v for k, v in os.environ.items() if k not in SCRUB and k != "VIRTUAL_ENV"}
    env.update(
        {
            "INFERBOX_DATA_DIR": str(data_dir),
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "JWT_SECRET": "bench-" + secrets.token_urlsafe(32),
            "PORT": str(port),
            "GATEWAY_PORT": str(gateway_port),
            "HOST": "127.0.0.1",
            "INFERBOX_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            "RATE_LIMIT_REQUESTS": str(HUGE),
            "RATE_LIMIT_BURST": str(HUGE),
            "INFERBOX_SCALE_TO_ZERO_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    proc = procs.start(
        "inferbox", [*INFERBOX, "serve"], log_path=work / "logs" / "inferbox.log", env=env, cwd=work
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health", proc, timeout=120)
    with httpx.Client(base_url=base, timeout=30) as anon:
        login = anon.post("/api/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        if login.status_code != 200:
            raise RuntimeError(f"admin login: {login.status_code} {login.text}")
        admin_token = login.json()["token"]
    admin = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {admin_token}"})
    created = admin.post("/api/admin/tenants", json={"name": TENANT})
    if created.status_code != 201:
        admin.close()
        raise RuntimeError(f"creating {TENANT}: {created.status_code} {created.text}")
    # The quick start's way: the CLI signs with the same JWT_SECRET the server uses.
    token = subprocess.run(
        [*INFERBOX, "token", "--tenant", TENANT],
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    tenant = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"})
    return Inferbox(proc, env, base, f"http://127.0.0.1:{gateway_port}", data_dir, admin, tenant, token)
