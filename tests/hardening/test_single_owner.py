"""The local runtime has one owner per store and data dir: a second `inferbox serve` is refused at start
with one clear line, and a crashed owner's successor takes over at once. Real `inferbox serve`
processes, as an operator runs them."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from support import INFERBOX, IRIS_ROW, base_env, free_port, postgres_url, serving, wait_for

from inferbox.control.lease import STALE_SECONDS, Lease
from inferbox.runtime.base import RuntimeLocked
from inferbox.store import Store
from inferbox.store.tables import RuntimeLease
from inferbox.timefmt import now

SECRET = "a-shared-secret-for-both-processes"


def refused_start(env: dict[str, str]) -> str:
    env = {**env, "PORT": str(free_port()), "HOST": "127.0.0.1", "GATEWAY_PORT": str(free_port())}
    r = subprocess.run([*INFERBOX, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("inferbox:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def deploy_iris(base: str, sklearn_dir: Path) -> str:
    token = httpx.post(
        f"{base}/api/admin/login", json={"username": "admin", "password": "pw-for-the-test"}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{base}/api/admin/tenants", json={"name": "tenant-a"}, headers=headers)
    body = {"name": "iris", "framework": "sklearn", "storageUri": str(sklearn_dir), "namespace": "tenant-a"}
    assert httpx.post(f"{base}/api/models", json=body, headers=headers).status_code == 201

    def ready() -> str | None:
        model = httpx.get(f"{base}/api/models/iris", headers=headers, params={"namespace": "tenant-a"}).json()
        return (
            model["url"]
            if model["status"] == "Ready" and model["statusDetails"]["replicas"]["ready"]
            else None
        )

    return wait_for(ready, timeout=30, interval=0.25)


def test_a_second_serve_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    env = base_env(tmp_path, JWT_SECRET=SECRET, ADMIN_PASSWORD="pw-for-the-test")
    with serving(env) as (base, _proc):
        line = refused_start(env)
        assert "owned by" in line or "in use" in line
        assert httpx.get(f"{base}/health").status_code == 200


def test_a_second_serve_on_the_same_postgresql_is_refused_and_a_killed_owner_is_succeeded(
    tmp_path: Path, postgres_schemas: Callable[[], str], sklearn_dir: Path
) -> None:
    url = postgres_url(postgres_schemas())
    common = {"JWT_SECRET": SECRET, "ADMIN_PASSWORD": "pw-for-the-test", "DATABASE_URL": url}
    first_env = base_env(tmp_path / "one", **common, INFERBOX_MODEL_ROOT=str(sklearn_dir.parent))
    second_env = base_env(tmp_path / "two", **common, INFERBOX_MODEL_ROOT=str(sklearn_dir.parent))
    with serving(first_env) as (base, proc):
        model_url = deploy_iris(base, sklearn_dir)
        line = refused_start(second_env)
        assert "owned by" in line and "only one `inferbox serve`" in line
        assert httpx.post(model_url, json={"instances": [IRIS_ROW]}).json() == {"predictions": [2]}

        # Killed without a chance to clean up: its replicas stop with it, and its lease is no obstacle.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        def gone() -> bool:
            try:
                httpx.post(model_url, json={"instances": [IRIS_ROW]}, timeout=1)
            except httpx.TransportError:
                return True
            return False

        assert wait_for(gone, timeout=30)
    with serving(second_env) as (base, _):
        assert httpx.get(f"{base}/health").json()["checks"]["runtime"] == {"status": "up"}
        assert deploy_iris_ready(base, model_url)


def deploy_iris_ready(base: str, model_url: str) -> bool:
    """The successor brings the model back on its recorded URL."""
    token = httpx.post(
        f"{base}/api/admin/login", json={"username": "admin", "password": "pw-for-the-test"}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    def ready() -> bool:
        model = httpx.get(f"{base}/api/models/iris", headers=headers, params={"namespace": "tenant-a"}).json()
        return model["status"] == "Ready" and model["url"] == model_url

    wait_for(ready, timeout=30, interval=0.25)
    return httpx.post(model_url, json={"instances": [IRIS_ROW]}).json() == {"predictions": [2]}


def test_lease_rules(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    first = Lease(store, "local")
    first.acquire()
    second = Lease(store, "local")
    with pytest.raises(RuntimeLocked, match="owned by"):
        second.acquire()
    assert first.renew()
    # A holder that stopped renewing goes stale; of the successors, one takes over.
    with store.session() as session:
        session.execute(update(RuntimeLease).values(renewed_at=now() - timedelta(seconds=STALE_SECONDS + 1)))
    second.acquire()
    third = Lease(store, "local")
    with pytest.raises(RuntimeLocked):
        third.acquire()
    # The old holder learns it lost the lease at its next renewal.
    assert not first.renew()
    second.release()
    third.acquire()
    store.close()
