"""The control-plane measures: create → Ready, the first request after scale-to-zero, idle RSS, listing
1,000 models. (API key validation per second is a load run, in __main__.)

Each returns plain numbers plus what it did, so that the report can say how a number was obtained.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import iris
from benchmarks.drivers import percentile
from benchmarks.inferbox_setup import TENANT, Inferbox, is_ready
from benchmarks.procs import children, cmdline, memory_mb, rss_mb, wait_until

POLL_SECONDS = 0.01


def create_to_ready(ibx: Inferbox, storage_uri: str, count: int) -> dict[str, Any]:
    """`count` times: POST /api/models, then GET it every 10 ms until Ready with a ready replica; the
    time from before the POST to the GET that showed it. Each model is deleted before the next one, so
    that every create meets the same server (one replica of iris running)."""
    samples: list[float] = []
    for i in range(count):
        name = f"bench-ready-{i + 1}"
        began = time.perf_counter()
        ibx.deploy(name, storage_uri, min_replicas=1, max_replicas=1)
        deadline = began + 60.0
        while True:
            body = ibx.model(name)
            if is_ready(body):
                break
            if body.get("status") == "FailedToLoad" or time.perf_counter() > deadline:
                raise RuntimeError(f"{name} never became Ready: {body.get('statusDetails')}")
            time.sleep(POLL_SECONDS)
        samples.append(time.perf_counter() - began)
        ibx.delete(name)
    return {
        "median_s": statistics.median(samples),
        "samples_s": [round(s, 4) for s in samples],
        "models": count,
        "poll_interval_ms": POLL_SECONDS * 1000,
    }


def first_request_after_scale_to_zero(ibx: Inferbox, storage_uri: str) -> dict[str, Any]:
    """A `minReplicas: 0` model: one call (so that its files are fetched and it has run once), then wait
    until its replicas total 0 (INFERBOX_SCALE_TO_ZERO_SECONDS=1), then time one
    POST /api/models/{name}/predict, which has to wait for a new replica."""
    name = "bench-zero"
    ibx.deploy(name, storage_uri, min_replicas=0, max_replicas=1)
    path = f"/api/models/{name}/predict"
    body = json.loads(iris.api_body())
    warm = ibx.tenant.post(path, json=body)
    if warm.status_code != 200:
        raise RuntimeError(f"first call of {name}: {warm.status_code} {warm.text}")
    began_wait = time.perf_counter()

    def at_zero() -> bool:
        replicas = (ibx.model(name).get("statusDetails") or {}).get("replicas") or {}
        return int(replicas.get("total") or 0) == 0

    wait_until(at_zero, timeout=120, interval=0.05, what=f"{name} scaled to zero")
    scaled_after = time.perf_counter() - began_wait
    began = time.perf_counter()
    response = ibx.tenant.post(path, json=body)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"call after scale-to-zero: {response.status_code} {response.text}")
    ibx.delete(name)
    return {
        "seconds": elapsed,
        "status": response.status_code,
        "answer": response.json(),
        "scaled_to_zero_after_s": round(scaled_after, 3),
    }


def replica_pid(ibx: Inferbox, model: str) -> tuple[int, str]:
    """The pid of `model`'s replica: a child of the serve process running the model server
    (`python -m inferbox.server` or `inferbox model-server`) with `--name MODEL`, or else the containerID
    `local://PID` that `kubectl get pods -A -o json` shows."""
    for pid in children(ibx.proc.pid):
        argv = cmdline(pid)
        server = "inferbox.server" in argv or "model-server" in argv
        if server and "--name" in argv[:-1] and argv[argv.index("--name") + 1] == model:
            return pid, "children of the serve process"
    response = ibx.admin.post("/api/admin/kubectl", json={"command": "get pods -A -o json"})
    response.raise_for_status()
    pods = json.loads(response.json()["result"]).get("items", [])
    for pod in pods:
        meta = pod.get("metadata", {})
        if meta.get("namespace") == TENANT and meta.get("name", "").startswith(model + "-"):
            match = re.search(r"local://(\d+)", json.dumps(pod.get("status", {})))
            if match:
                return int(match.group(1)), "kubectl get pods -A -o json"
    raise RuntimeError(f"no replica process found for {model}")


def idle_rss(ibx: Inferbox, model: str, settle: float) -> dict[str, Any]:
    """VmRSS of `inferbox serve` and of `model`'s one replica after `settle` seconds without traffic."""
    time.sleep(settle)
    pid, how = replica_pid(ibx, model)
    return {
        "serve_mb": rss_mb(ibx.proc.pid),
        "replica_mb": rss_mb(pid),
        "serve_pid": ibx.proc.pid,
        "replica_pid": pid,
        "replica_found_by": how,
        "settle_s": settle,
        "serve_detail_mb": memory_mb(ibx.proc.pid),
        "replica_detail_mb": memory_mb(pid),
    }


def insert_models(db_path: Path, storage_uri: str, total: int) -> int:
    """Fill tenant-a up to `total` models with rows written straight into the SQLite store (no replica
    can run for them: minReplicas 0, maxReplicas 1; the runtime never hears of them, so they list as
    Unknown). Returns how many rows were added."""
    from sqlalchemy import func, select

    from inferbox.store import Store
    from inferbox.store.tables import Model

    store = Store(f"sqlite:///{db_path}")
    try:
        with store.session() as session:
            have = (
                session.scalar(select(func.count()).select_from(Model).where(Model.namespace == TENANT)) or 0
            )
            stamp = datetime.now(UTC)
            rows = [
                Model(
                    namespace=TENANT,
                    name=f"bench-list-{i:04d}",
                    framework="sklearn",
                    storage_uri=storage_uri,
                    min_replicas=0,
                    max_replicas=1,
                    scale_target=10,
                    scale_metric="concurrency",
                    generation=1,
                    port=None,
                    created_at=stamp,
                    updated_at=stamp,
                )
                for i in range(max(0, total - have))
            ]
            session.add_all(rows)
        return len(rows)
    finally:
        store.close()


def list_models(ibx: Inferbox, storage_uri: str, total: int, calls: int) -> dict[str, Any]:
    """GET /api/models as tenant-a with `total` models in the tenant, `calls` times back to back."""
    added = insert_models(ibx.db_path, storage_uri, total)
    first = ibx.tenant.get("/api/models")
    first.raise_for_status()
    listed = len(first.json()["models"])
    latencies: list[float] = []
    for _ in range(calls):
        began = time.perf_counter()
        response = ibx.tenant.get("/api/models")
        latencies.append((time.perf_counter() - began) * 1000.0)
        response.raise_for_status()
    latencies.sort()
    return {
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "max_ms": latencies[-1],
        "calls": calls,
        "models_listed": listed,
        "rows_inserted_directly": added,
        "response_bytes": len(first.content),
    }
