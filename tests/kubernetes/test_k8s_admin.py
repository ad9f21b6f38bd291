"""Admin on the Kubernetes runtime: the real kubectl against the emulated API server (behind the same
guard as on the local runtime), a missing binary, `/api/admin/system` from Nodes, Namespaces and
Deployments, and `/api/admin/resources` on both runtimes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx
import pytest
from k8s_helpers import Kserve
from support import RunningServer

from benchmarks.kube_emulator import EmulatorThread

RESOURCE_KINDS = {
    "pods",
    "services",
    "gateways",
    "httpRoutes",
    "inferenceServices",
    "servingRuntimes",
    "clusterServingRuntimes",
}


def hostile_table() -> list[tuple[str, str]]:
    """The admin issue's hostile kubectl table, read from the local runtime's test (one table)."""
    source = (Path(__file__).parents[1] / "api" / "test_kubectl.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HOSTILE" for t in node.targets):
            table: list[tuple[str, str]] = ast.literal_eval(node.value)
            return table
    raise AssertionError("HOSTILE not found in tests/api/test_kubectl.py")


HOSTILE = hostile_table()


@pytest.fixture(scope="module")
def admin(k8s: RunningServer) -> Any:
    with k8s.admin() as client:
        yield client


@pytest.fixture(scope="module")
def deployed(k8s: RunningServer, kserve: Kserve) -> str:
    with k8s.tenant("ops-team") as c:
        r = c.post("/api/models", json={"name": "iris", "framework": "sklearn", "storageUri": "s3://m/iris"})
        assert r.status_code == 201, r.text
    kserve.ready("ops-team", "iris", "http://127.0.0.1:9", replicas=2)
    return "ops-team"


def kubectl_calls(cluster: EmulatorThread) -> int:
    return cluster.call(lambda e: sum(1 for _, _, agent in e.seen if agent.startswith("kubectl")))


def kubectl(admin: httpx.Client, command: str) -> str:
    r = admin.post("/api/admin/kubectl", json={"command": command})
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def test_allowed_commands_run_the_real_kubectl(
    admin: httpx.Client, deployed: str, cluster: EmulatorThread
) -> None:
    before = kubectl_calls(cluster)
    namespaces = kubectl(admin, "get namespaces")
    assert namespaces.splitlines()[0].split() == ["NAME", "AGE"]
    assert deployed in namespaces
    assert "iris" in kubectl(admin, f"get inferenceservices -n {deployed}")
    pods = kubectl(admin, f"get pods -n {deployed} -o name")
    assert pods.split() == ["pod/iris-predictor-0", "pod/iris-predictor-1"]
    assert "iris-predictor-1 line 2" in kubectl(admin, f"logs iris-predictor-1 -n {deployed}")
    assert "inferenceservices" in kubectl(admin, "api-resources")
    assert "Client Version" in kubectl(admin, "version")
    # kubectl's own errors come back as its output, not as an API error.
    assert "NotFound" in kubectl(admin, "get pod nope -n ops-team") or "not found" in kubectl(
        admin, "get pod nope -n ops-team"
    )
    assert kubectl_calls(cluster) > before


def test_the_hostile_table_is_refused_before_any_process_starts(
    admin: httpx.Client, cluster: EmulatorThread
) -> None:
    before = kubectl_calls(cluster)
    for command, reason in HOSTILE:
        r = admin.post("/api/admin/kubectl", json={"command": command})
        assert r.status_code == 400, (command, r.text)
        assert reason in r.json()["details"], (command, r.text)
    assert kubectl_calls(cluster) == before  # no kubectl ever reached the API server


def test_a_missing_binary_is_503(
    admin: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    r = admin.post("/api/admin/kubectl", json={"command": "get pods -A"})
    assert r.status_code == 503, r.text
    assert "kubectl binary" in r.json()["details"]


def test_system_reads_nodes_namespaces_and_deployments(admin: httpx.Client, deployed: str) -> None:
    body = admin.get("/api/admin/system").json()
    assert [n["name"] for n in body["nodes"]] == ["node-1"]
    assert body["nodes"][0]["capacity"] == {"cpu": "8", "memory": "32Gi"}
    assert deployed in [n["name"] for n in body["namespaces"]]
    [dep] = [d for d in body["deployments"] if d["namespace"] == deployed]
    assert dep == {"name": "iris-predictor", "namespace": deployed, "ready": 2, "replicas": 2, "available": 2}


def test_resources_on_kubernetes(admin: httpx.Client, deployed: str) -> None:
    body = admin.get("/api/admin/resources").json()
    assert set(body) == RESOURCE_KINDS
    [isvc] = [i for i in body["inferenceServices"] if i["namespace"] == deployed]
    assert (isvc["name"], isvc["status"]) == ("iris", "Ready")
    assert {p["name"] for p in body["pods"] if p["namespace"] == deployed} == {
        "iris-predictor-0",
        "iris-predictor-1",
    }
    for items in body.values():
        for item in items:
            assert {"name", "namespace", "status", "created"} <= set(item)


def test_resources_on_the_local_runtime(make_server: Any) -> None:
    local = make_server()
    with local.admin() as c:
        body = c.get("/api/admin/resources").json()
        assert set(body) == RESOURCE_KINDS
        assert body["gateways"][0]["name"] == "inferbox-gateway"
        assert "inferbox-sklearn" in [r["name"] for r in body["clusterServingRuntimes"]]
        assert c.get("/api/admin/resources", headers={"Authorization": "Bearer nope"}).status_code == 401
    with local.tenant("tenant-a") as tenant:
        assert tenant.get("/api/admin/resources").status_code == 403
