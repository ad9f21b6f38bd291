"""Tenant administration routes."""

from __future__ import annotations

import pytest
from support import RunningServer


def test_create_list_delete(server: RunningServer) -> None:
    with server.admin() as c:
        r = c.post("/api/admin/tenants", json={"name": "tenant-a"})
        assert r.status_code == 201
        assert r.json()["name"] == "tenant-a"
        assert r.json()["status"] == "Active"
        r = c.get("/api/admin/tenants")
        assert r.status_code == 200
        tenants = r.json()["tenants"]
        assert [t["name"] for t in tenants] == ["tenant-a"]
        assert set(tenants[0]) == {"name", "status", "created"}
        assert tenants[0]["created"].endswith("Z")
        r = c.delete("/api/admin/tenants/tenant-a")
        assert r.status_code == 200
        assert c.get("/api/admin/tenants").json() == {"tenants": []}
        assert c.delete("/api/admin/tenants/tenant-a").status_code == 404


def test_create_validates_the_body(server: RunningServer) -> None:
    with server.admin() as c:
        r = c.post("/api/admin/tenants", json={})
        assert r.status_code == 400
        assert r.json() == {"error": "Invalid request format", "details": "Field 'name' is required"}
        r = c.post("/api/admin/tenants", json=["tenant-a"])
        assert r.status_code == 400
        r = c.post("/api/admin/tenants", json={"name": 7})
        assert r.status_code == 400
        assert "name" in r.json()["details"]


@pytest.mark.parametrize("name", ["Tenant-A", "-a", "a-", "a_b", "a.b", "", "x" * 64, "admin", "kube-system"])
def test_bad_names_are_400(server: RunningServer, name: str) -> None:
    with server.admin() as c:
        r = c.post("/api/admin/tenants", json={"name": name})
        assert r.status_code == 400
        assert "name" in r.json()["details"]
        assert c.get("/api/admin/tenants").json() == {"tenants": []}


def test_duplicate_is_409(server: RunningServer) -> None:
    with server.admin() as c:
        assert c.post("/api/admin/tenants", json={"name": "tenant-a"}).status_code == 201
        r = c.post("/api/admin/tenants", json={"name": "tenant-a"})
    assert r.status_code == 409
    assert r.json()["error"] == "Tenant already exists"


def test_a_deleted_tenant_s_token_stops_working(server: RunningServer) -> None:
    token = server.tenant_token("tenant-a")
    with server.client(token) as c:
        assert c.get("/api/tenant").status_code == 200
    with server.admin() as c:
        assert c.delete("/api/admin/tenants/tenant-a").status_code == 200
    with server.client(token) as c:
        r = c.get("/api/tenant")
    assert r.status_code == 401
    assert "tenant-a" in r.json()["details"]


def test_tenant_routes_are_admin_only(server: RunningServer) -> None:
    with server.tenant("tenant-a") as c:
        assert c.post("/api/admin/tenants", json={"name": "tenant-b"}).status_code == 403
        assert c.delete("/api/admin/tenants/tenant-a").status_code == 403
    with server.client() as c:
        assert c.get("/api/admin/tenants").status_code == 401
