"""Admin routes: the system view, the audit log and the service's recent log lines (kubectl has its own
file), over real HTTP with real replicas."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RunningServer
from test_models import wait_ready

import inferbox
from inferbox.logs import ScrubFilter

ADMIN_ROUTES = [
    ("GET", "/api/admin/system", None),
    ("POST", "/api/admin/kubectl", {"command": "get pods"}),
    ("GET", "/api/admin/audit", None),
    ("GET", "/api/admin/logs", None),
    ("GET", "/api/admin/ai-gateway-service", None),
]


@pytest.fixture(scope="module")
def plain(module_servers) -> RunningServer:
    """One control plane without models, shared by the tests that only ask and are refused."""
    return module_servers()


def memory_quantity(num_bytes: int) -> str:
    for suffix, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if num_bytes >= size:
            return f"{num_bytes // size}{suffix}"
    return str(num_bytes)


def mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_system_shows_this_machine_the_tenants_and_a_ready_deployment(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    srv.tenant_token("tenant-b")
    with srv.tenant("tenant-a") as c:
        r = c.post(
            "/api/models", json={"name": "iris", "framework": "sklearn", "storageUri": str(sklearn_dir)}
        )
        assert r.status_code == 201, r.text
        wait_ready(c, "iris")
    with srv.admin() as admin:
        r = admin.get("/api/admin/system")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"nodes", "namespaces", "deployments"}
    (node,) = body["nodes"]
    assert node["name"] == socket.gethostname()
    assert node["status"] == "Ready"
    assert node["version"] == inferbox.__version__
    assert node["capacity"] == {"cpu": str(os.cpu_count()), "memory": memory_quantity(mem_total_bytes())}
    assert node["allocatable"]["cpu"] == str(os.cpu_count())
    assert re.fullmatch(r"\d+(Ki|Mi|Gi|Ti)", node["allocatable"]["memory"])
    assert [(n["name"], n["status"]) for n in body["namespaces"]] == [
        ("tenant-a", "Active"),
        ("tenant-b", "Active"),
    ]
    for namespace in body["namespaces"]:
        created = datetime.fromisoformat(namespace["created"])
        assert namespace["created"].endswith("Z")
        assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert body["deployments"] == [
        {"name": "iris-predictor", "namespace": "tenant-a", "ready": 1, "replicas": 1, "available": 1}
    ]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_tenants_and_anonymous_callers(
    plain: RunningServer, method: str, path: str, body: dict[str, Any] | None
) -> None:
    srv = plain
    with srv.tenant("tenant-a") as tenant:
        r = tenant.request(method, path, json=body)
    assert r.status_code == 403
    assert r.json() == {"error": "Admin access required", "details": "This route is for the platform admin"}
    with srv.client() as anonymous:
        r = anonymous.request(method, path, json=body)
    assert r.status_code == 401
    assert r.json()["error"] == "Authentication required"
    with srv.client("not-a-token") as bad:
        assert bad.request(method, path, json=body).status_code == 401


def entries(admin: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = admin.get("/api/admin/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["entries"])
    return body["entries"]


def find(log: list[dict[str, Any]], action: str, outcome: str, **fields: Any) -> dict[str, Any]:
    for entry in log:
        same = entry["action"] == action and entry["outcome"] == outcome
        if same and all(entry.get(k) == v for k, v in fields.items()):
            return entry
    raise AssertionError(f"no audit entry {action}/{outcome} {fields} in {[e['action'] for e in log]}")


def test_audit_records_security_events_and_changes_without_secrets(
    server: RunningServer, sklearn_dir: Path
) -> None:
    wrong_password = "Wr0ng-Passw0rd-9f1c"
    started = datetime.now(UTC) - timedelta(seconds=1)
    with server.client() as anonymous:
        r = anonymous.post("/api/admin/login", json={"username": "admin", "password": wrong_password})
        assert r.status_code == 401
        assert (
            anonymous.get("/api/models", headers={"Authorization": "Bearer garbage.x.y"}).status_code == 401
        )
    admin_token = server.admin_token()
    tenant_token = server.tenant_token("tenant-a")
    with server.client(admin_token) as admin, server.client(tenant_token) as tenant:
        assert admin.post("/api/admin/tenants", json={"name": "tenant-x"}).status_code == 201
        assert admin.delete("/api/admin/tenants/tenant-x").status_code == 200
        r = tenant.post(
            "/api/models", json={"name": "iris", "framework": "sklearn", "storageUri": str(sklearn_dir)}
        )
        assert r.status_code == 201, r.text
        assert tenant.put("/api/models/iris", json={"maxReplicas": 2}).status_code == 200
        assert tenant.delete("/api/models/iris").status_code == 200
        assert admin.post("/api/admin/kubectl", json={"command": "get ns"}).status_code == 200
        refused = admin.post("/api/admin/kubectl", json={"command": f"get pods --token={tenant_token}"})
        assert refused.status_code == 400

        log = entries(admin)
        keys = {"id", "timestamp", "actor", "tenant", "action", "target", "outcome", "requestId", "sourceIp"}
        for entry in log:
            assert keys | {"details"} == set(entry)
            assert entry["timestamp"].endswith("Z")
        failed_login = find(log, "auth.login", "failure", actor="admin", target="admin")
        login = find(log, "auth.login", "success", actor="admin")
        assert login["sourceIp"] == "127.0.0.1" and login["requestId"]
        assert failed_login["id"] < login["id"]
        assert find(log, "auth.tokenRefused", "denied")["actor"] == "anonymous"
        find(log, "tenant.create", "success", actor="admin", target="tenant-x", tenant="tenant-x")
        find(log, "tenant.delete", "success", actor="admin", target="tenant-x")
        for action in ("model.create", "model.update", "model.delete"):
            find(log, action, "success", actor="tenant-a-user", tenant="tenant-a", target="iris")
        assert find(log, "admin.kubectl", "success")["details"]["command"] == "get ns"
        assert "token" in find(log, "admin.kubectl", "denied")["details"]["reason"]

        # Newest first; no secret in any entry, in any field.
        ids = [e["id"] for e in log]
        assert ids == sorted(ids, reverse=True)
        dumped = json.dumps(log)
        for secret in (wrong_password, admin_token, tenant_token, server.settings.jwt_secret):
            assert secret not in dumped

        # Filters.
        only_a = entries(admin, tenant="tenant-a")
        assert only_a and all(e["tenant"] == "tenant-a" for e in only_a)
        assert {"model.create", "model.update", "model.delete"} <= {e["action"] for e in only_a}
        logins = entries(admin, action="auth.login")
        assert [e["outcome"] for e in logins] == ["success", "failure"]
        assert [e["id"] for e in entries(admin, limit=2)] == ids[:2]
        assert entries(admin, since=started.isoformat())[-1]["id"] == ids[-1]
        middle = log[len(log) // 2]
        recent = entries(admin, since=middle["timestamp"])
        assert recent and all(e["timestamp"] >= middle["timestamp"] for e in recent)
        assert len(recent) < len(log)
        assert entries(admin, since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
        assert len(entries(admin, since="1h")) == len(entries(admin))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -5}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-13-45T99:00:00Z"}, "since"),
        ({"since": "5 minutes"}, "since"),
    ],
)
def test_audit_refuses_bad_parameters(plain: RunningServer, params: dict[str, Any], field: str) -> None:
    with plain.admin() as admin:
        r = admin.get("/api/admin/audit", params=params)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "Invalid request format"
    assert f"'{field}'" in body["details"]


@pytest.fixture
def recent_logs_attached(make_server) -> Iterator[RunningServer]:
    """A server whose recent-lines buffer hears the `inferbox` loggers, as `inferbox serve` wires it
    (`inferbox.logs.setup`), without touching the test process's root logger."""
    srv = make_server()
    handler = srv.platform.recent_logs
    handler.addFilter(ScrubFilter())
    logger = logging.getLogger("inferbox")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield srv
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_logs_returns_recent_lines_bounded_and_by_level(recent_logs_attached: RunningServer) -> None:
    srv = recent_logs_attached
    token = srv.tenant_token("tenant-a")
    with srv.client(token) as tenant:
        for _ in range(5):
            assert tenant.get("/api/models").status_code == 200
    logging.getLogger("inferbox.test").warning("something odd with token=%s", token)
    with srv.admin() as admin:
        r = admin.get("/api/admin/logs", params={"lines": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == 3 == len(body["lines"])
        assert set(body["lines"][0]) == {"timestamp", "level", "logger", "message"}
        # The original web UI reads `logs`: the same lines, as text.
        first = body["lines"][0]
        level, logger = first["level"].upper(), first["logger"]
        assert body["logs"][0] == f"{first['timestamp']} {level} {logger}: {first['message']}"
        assert len(body["logs"]) == 3
        everything = admin.get("/api/admin/logs", params={"lines": 5000}).json()["lines"]
        assert any(line["message"].startswith("GET /api/models 200") for line in everything)
        warnings = admin.get("/api/admin/logs", params={"level": "warning"}).json()["lines"]
        assert warnings and all(line["level"] in ("warning", "error", "critical") for line in warnings)
        assert any("something odd" in line["message"] for line in warnings)
        assert token not in json.dumps(everything)
        assert admin.get("/api/admin/logs", params={"level": "loud"}).status_code == 400
        assert admin.get("/api/admin/logs", params={"lines": 0}).status_code == 400


def test_openapi_documents_the_admin_routes(plain: RunningServer) -> None:
    with plain.client() as c:
        spec = c.get("/api/openapi.json").json()
    paths = spec["paths"]
    for method, path, _ in ADMIN_ROUTES:
        operation = paths[path][method.lower()]
        assert operation["summary"]
        assert "200" in operation["responses"] and "403" in operation["responses"]
    schemas = spec["components"]["schemas"]
    assert {"SystemInfo", "KubectlRequest", "KubectlResponse", "AuditList", "LogList"} <= set(schemas)
    assert set(schemas["SystemInfo"]["properties"]) == {"nodes", "namespaces", "deployments"}
