"""`python -m benchmarks.kubernetes_list`: GET /api/models over 1,000 InferenceServices on the
Kubernetes runtime, p50 and p90.

The cluster is kmock's emulator (benchmarks/kube_emulator.py) on loopback, the control plane a real
`inferbox` app with INFERBOX_RUNTIME=kubernetes served by uvicorn in this process. Every model is
created through the API (so the InferenceService exists in the emulator), then marked Ready with an
address and a predictor Deployment as KServe would, and the listing waits until the watch has brought
every status into the cache. The measure is the API's, answered from that cache: no request per call
reaches the API server (the emulator's request count is reported to show it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from benchmarks import measures
from benchmarks.drivers import percentile
from benchmarks.kube_emulator import EmulatorThread
from inferbox.app import create_app
from inferbox.assembly import Platform, build
from inferbox.config import Settings

ISVC = "serving.kserve.io/v1beta1/inferenceservices"
TENANT = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(e: Any, name: str) -> None:
    e.put(
        ISVC,
        {
            "metadata": {"name": name, "namespace": TENANT},
            "status": {
                "url": f"http://{name}.{TENANT}.example.com",
                "address": {"url": f"http://{name}-predictor.{TENANT}.svc.cluster.local"},
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "PredictorReady", "status": "True"},
                ],
                "modelStatus": {"states": {"activeModelState": "Loaded"}, "transitionStatus": "UpToDate"},
            },
        },
    )


@contextlib.contextmanager
def _served(settings: Settings) -> Iterator[tuple[Platform, str]]:
    """A control plane in this process on a free loopback port (its lifespan runs the runtime)."""
    platform = build(settings)
    port = _free_port()
    app = create_app(platform)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **settings.server_options())
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield platform, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _settings(work: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=work / "data",
        jwt_secret="bench-secret-" + secrets.token_hex(16),
        host="127.0.0.1",
        gateway_port=_free_port(),
        rate_limit_requests=10**9,
        rate_limit_burst=10**9,
        redis_prefix=f"ibx-bench-{secrets.token_hex(4)}",
        **extra,
    )


def _timed(client: httpx.Client, calls: int) -> tuple[list[float], httpx.Response]:
    latencies = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = client.get("/api/models")
        latencies.append((time.perf_counter() - t0) * 1000.0)
        r.raise_for_status()
    latencies.sort()
    return latencies, r


def local_baseline(total: int, calls: int) -> dict[str, Any]:
    """The same listing on the local runtime, same harness and moment: `total` rows written straight
    into its store (as `python -m benchmarks` does; they list as Unknown, with no conditions)."""
    work = Path(tempfile.mkdtemp(prefix="ibx-local-bench-"))
    with _served(_settings(work)) as (platform, url):
        platform.tenants.create(measures.TENANT)
        measures.insert_models(work / "data" / "inferbox.db", "s3://models/iris", total)
        token = platform.tokens.issue_tenant(measures.TENANT)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            listed = len(client.get("/api/models").json()["models"])
            latencies, _ = _timed(client, calls)
    return {"models_listed": listed, "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90)}


def measure(total: int = 1000, calls: int = 50) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ibx-k8s-bench-"))
    cluster = EmulatorThread().start()
    cluster.call(lambda e: e.put("v1/namespaces", {"metadata": {"name": "inferbox"}}))
    settings = _settings(work, runtime="kubernetes", kubeconfig=str(cluster.kubeconfig(work)))
    try:
        with _served(settings) as (platform, url):
            platform.tenants.create(TENANT)
            token = platform.tokens.issue_tenant(TENANT)
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as client:
                began = time.perf_counter()
                for i in range(total):
                    body = {"name": f"m{i:04d}", "framework": "sklearn", "storageUri": "s3://models/iris"}
                    client.post("/api/models", json=body).raise_for_status()
                create_s = time.perf_counter() - began
                cluster.call(lambda e: [_ready(e, f"m{i:04d}") for i in range(total)])
                deadline = time.monotonic() + 120
                while True:
                    models = client.get("/api/models").json()["models"]
                    if sum(m["status"] == "Ready" for m in models) == total:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("the cache did not catch up within 120 s")
                    time.sleep(0.2)
                seen_before = cluster.call(lambda e: len(e.seen))
                latencies, last = _timed(client, calls)
                seen_after = cluster.call(lambda e: len(e.seen))
    finally:
        cluster.close()
    local = local_baseline(total, calls)
    p50 = percentile(latencies, 50)
    return {
        "inference_services": total,
        "models_listed": len(models),
        "calls": calls,
        "p50_ms": p50,
        "p90_ms": percentile(latencies, 90),
        "max_ms": latencies[-1],
        # The periodic resync (every 30 s) may fall inside the calls: its lists, never the listing's.
        "api_server_requests_during_calls": seen_after - seen_before,
        "create_all_s": round(create_s, 2),
        "response_bytes": len(last.content),
        "local_p50_ms": local["p50_ms"],
        "local_p90_ms": local["p90_ms"],
        "x_local_p50": None if not (p50 and local["p50_ms"]) else round(p50 / local["p50_ms"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kubernetes_list", description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args(argv)
    result = measure(args.models, args.calls)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
