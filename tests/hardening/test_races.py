"""Races: every write raced 20-wide, in one process and across two sharing PostgreSQL.

One winner each (the rest 409 or 404), no duplicate or orphan rows, and after any number of concurrent
key rotations exactly the newest key works (plus its predecessor when a grace period was asked for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from support import IRIS_ROW, RunningServer, client_from, deploy, postgres_url, wait_for

import inferbox
from inferbox.auth import apikeys
from inferbox.store.tables import ApiKey, AuditEntry, Model, Publication

WIDTH = 20
PEER = Path(__file__).with_name("peer.py")


def raced(count: int, call: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """`count` calls released at once from their own threads."""
    barrier = threading.Barrier(count)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def valid_keys(srv: RunningServer, keys: list[str]) -> list[str]:
    with srv.client() as c:
        return [k for k in keys if c.post("/api/validate-api-key", json={"apiKey": k}).status_code == 200]


def gateway_accepts(srv: RunningServer, keys: list[str]) -> list[str]:
    """The keys the gateway admits. Each is tried from its own loopback address: the gateway answers an
    address that keeps sending refused keys with 429 (a guesser's flood), not with 401."""
    admitted = []
    for i, key in enumerate(keys):
        with client_from(srv.gateway_url, f"127.0.2.{i + 1}") as c:
            r = c.post("/models/my-model/predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": key})
        assert r.status_code in (200, 401), r.text
        if r.status_code == 200:
            admitted.append(key)
    return admitted


def count_rows(srv: RunningServer, table: Any, *where: Any) -> int:
    with srv.platform.store.session() as session:
        return session.scalar(select(func.count()).select_from(table).where(*where)) or 0


def test_every_write_raced_20_wide_has_one_winner(server: RunningServer, sklearn_dir: Path) -> None:
    srv = server
    token = srv.tenant_token("tenant-a")
    api = srv.base_url
    auth = {"Authorization": f"Bearer {token}"}
    body = {"name": "my-model", "framework": "sklearn", "storageUri": str(sklearn_dir)}

    created = raced(WIDTH, lambda _: httpx.post(f"{api}/api/models", json=body, headers=auth, timeout=60))
    assert Counter(r.status_code for r in created) == {201: 1, 409: WIDTH - 1}
    assert count_rows(srv, Model) == 1
    with srv.tenant("tenant-a") as c:
        wait_for(lambda: c.get("/api/models/my-model").json()["status"] == "Ready", timeout=30)
    assert len(srv.platform.runtime.replicas()) == 1

    published = raced(
        WIDTH,
        lambda _: httpx.post(f"{api}/api/models/my-model/publish", json={}, headers=auth, timeout=60),
    )
    assert Counter(r.status_code for r in published) == {201: 1, 409: WIDTH - 1}
    assert count_rows(srv, Publication) == 1 and count_rows(srv, ApiKey) == 1

    rotated = raced(
        WIDTH,
        lambda _: httpx.post(f"{api}/api/models/my-model/publish/rotate-key", headers=auth, timeout=60),
    )
    assert [r.status_code for r in rotated] == [200] * WIDTH
    keys = [r.json()["newApiKey"] for r in rotated]
    [newest] = valid_keys(srv, keys)
    assert count_rows(srv, ApiKey) == 1
    with srv.tenant("tenant-a") as c:
        assert c.get("/api/models/my-model/publish").json()["apiKey"] == apikeys.mask(newest)
    assert gateway_accepts(srv, keys) == [newest]

    # With a grace period the key that was active a moment ago keeps working, and no older one.
    graced = raced(
        WIDTH,
        lambda _: httpx.post(
            f"{api}/api/models/my-model/publish/rotate-key",
            params={"gracePeriodSeconds": 3600},
            headers=auth,
            timeout=60,
        ),
    )
    assert [r.status_code for r in graced] == [200] * WIDTH
    still = valid_keys(srv, [newest, *(r.json()["newApiKey"] for r in graced)])
    assert len(still) == 2 and count_rows(srv, ApiKey) == 2

    unpublished = raced(
        WIDTH, lambda _: httpx.delete(f"{api}/api/models/my-model/publish", headers=auth, timeout=60)
    )
    assert Counter(r.status_code for r in unpublished) == {200: 1, 404: WIDTH - 1}
    assert count_rows(srv, Publication) == 0 and count_rows(srv, ApiKey) == 0

    deleted = raced(WIDTH, lambda _: httpx.delete(f"{api}/api/models/my-model", headers=auth, timeout=60))
    assert Counter(r.status_code for r in deleted) == {200: 1, 404: WIDTH - 1}
    assert count_rows(srv, Model) == 0
    wait_for(lambda: srv.platform.runtime.replicas() == [], timeout=30)
    srv.platform.audit.flush()
    outcomes = Counter(
        (e.action, e.outcome)
        for e in srv.platform.audit.query(limit=1000)
        if e.action in ("model.delete", "publish.delete", "publish.create", "model.create")
    )
    assert outcomes[("model.delete", "success")] == 1
    assert outcomes[("publish.delete", "success")] == 1
    assert outcomes[("publish.create", "success")] == 1
    assert outcomes[("model.create", "success")] == 1


def _peer(srv: RunningServer, action: str, count: int) -> subprocess.Popen[str]:
    # The peer imports the same inferbox as this process (a script's own folder comes first in its path).
    source = str(Path(inferbox.__file__).parent.parent)
    peer = subprocess.Popen(
        [sys.executable, str(PEER), srv.settings.effective_database_url, action, "my-model", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": source},
    )
    assert peer.stdout is not None and peer.stdout.readline().strip() == "ready"
    return peer


def _results(peer: subprocess.Popen[str]) -> list[Any]:
    out, _ = peer.communicate(timeout=60)
    assert peer.returncode == 0
    return json.loads(out.strip().splitlines()[-1])["results"]


def _both(srv: RunningServer, action: str, api_call: Callable[[int], httpx.Response]) -> tuple[list, list]:
    """Half the calls from this process's API, half from the peer process, started together."""
    half = WIDTH // 2
    peer = _peer(srv, action, half)
    assert peer.stdin is not None
    peer.stdin.write("go\n")
    peer.stdin.flush()
    mine = raced(half, api_call)
    return mine, _results(peer)


def test_races_across_two_processes_sharing_postgresql(
    make_server, postgres_schemas: Callable[[], str], sklearn_dir: Path
) -> None:
    srv = make_server(postgres_url(postgres_schemas()))
    deploy(srv, sklearn_dir)
    auth = {"Authorization": f"Bearer {srv.tenant_token('tenant-a')}"}
    url = f"{srv.base_url}/api/models/my-model/publish"

    mine, theirs = _both(srv, "publish", lambda _: httpx.post(url, json={}, headers=auth, timeout=60))
    statuses = [r.status_code for r in mine] + [201 if isinstance(t, str) else t for t in theirs]
    assert Counter(statuses) == {201: 1, 409: WIDTH - 1}
    assert count_rows(srv, Publication) == 1 and count_rows(srv, ApiKey) == 1

    mine, theirs = _both(srv, "rotate", lambda _: httpx.post(f"{url}/rotate-key", headers=auth, timeout=60))
    assert [r.status_code for r in mine] == [200] * (WIDTH // 2)
    keys = [r.json()["newApiKey"] for r in mine] + theirs
    assert all(isinstance(k, str) for k in keys)
    assert count_rows(srv, ApiKey) == 1
    # The newest key is the one the store keeps; the peer's rotations reach this process's gateway with
    # its next reload of the routes.
    with srv.platform.store.session() as session:
        kept = session.scalar(select(ApiKey.lookup_id))
    [newest] = [k for k in keys if apikeys.lookup_id(k) == kept]
    wait_for(lambda: valid_keys(srv, keys) == [newest], timeout=10)
    assert gateway_accepts(srv, keys) == [newest]

    mine, theirs = _both(srv, "unpublish", lambda _: httpx.delete(url, headers=auth, timeout=60))
    statuses = [r.status_code for r in mine] + theirs
    assert Counter(statuses) == {200: 1, 404: WIDTH - 1}
    assert count_rows(srv, Publication) == 0 and count_rows(srv, ApiKey) == 0
    srv.platform.audit.flush()
    with srv.platform.store.session() as session:
        created = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "publish.create", AuditEntry.outcome == "success")
        )
    assert created == 1
