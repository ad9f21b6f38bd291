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
import json
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from benchmarks.drivers import percentile
from benchmarks.kube_emulator import EmulatorThread
from inferbox.app import create_app
from inferbox.assembly import build
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


def measure(total: int = 1000, calls: int = 50) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ibx-k8s-bench-"))
    cluster = EmulatorThread().start()
    cluster.call(lambda e: e.put("v1/namespaces", {"metadata": {"name": "inferbox"}}))
    settings = Settings(
        data_dir=work / "data",
        jwt_secret="bench-secret-" + secrets.token_hex(16),
        host="127.0.0.1",
        gateway_port=_free_port(),
        runtime="kubernetes",
        kubeconfig=str(cluster.kubeconfig(work)),
        rate_limit_requests=10**9,
        rate_limit_burst=10**9,
        redis_prefix=f"ibx-bench-{secrets.token_hex(4)}",
    )
    platform = build(settings)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform), host="127.0.0.1", port=port, lifespan="on", **settings.server_options()
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        platform.tenants.create(TENANT)
        token = platform.tokens.issue_tenant(TENANT)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
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
            latencies = []
            for _ in range(calls):
                t0 = time.perf_counter()
                r = client.get("/api/models")
                latencies.append((time.perf_counter() - t0) * 1000.0)
                r.raise_for_status()
            seen_after = cluster.call(lambda e: len(e.seen))
        latencies.sort()
        return {
            "inference_services": total,
            "models_listed": len(models),
            "calls": calls,
            "p50_ms": percentile(latencies, 50),
            "p90_ms": percentile(latencies, 90),
            "max_ms": latencies[-1],
            "api_server_requests_during_calls": seen_after - seen_before,
            "create_all_s": round(create_s, 2),
            "response_bytes": len(r.content),
        }
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        cluster.close()


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
