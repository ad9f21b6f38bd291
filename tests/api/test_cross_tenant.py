"""A tenant that names another tenant gets the spec's 403, on every route that takes a tenant.

`?namespace=`, a model's `namespace` and a publication's `config.tenantId` naming another tenant are
refused with `{"error": "Insufficient permissions for tenant: NAME"}` whether that tenant exists or
not (the answer must not tell which do), and each refusal is audited. Another tenant's model by name,
without naming the tenant, stays 404, as if it did not exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RunningServer, deploy

OWNER, CALLER = "tenant-b", "tenant-a"


@pytest.fixture(scope="module")
def srv(module_servers, sklearn_dir: Path) -> RunningServer:
    server = module_servers()
    deploy(server, sklearn_dir, tenant=OWNER, name="b-model")
    server.tenant_token(CALLER)
    return server


def _routes(named: str, model: str, storage: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request arguments) of every route that takes a tenant, naming `named`."""
    ns = {"params": {"namespace": named}}
    predict = {"inputData": {"instances": [[1.0, 2.0, 3.0, 4.0]]}}
    create = {"name": "fresh", "framework": "sklearn", "storageUri": storage}
    base = f"/api/models/{model}"
    return [
        ("GET", "/api/models", ns),
        ("POST", "/api/models", {"json": {**create, "namespace": named}}),
        ("POST", "/api/models", {**ns, "json": create}),
        ("GET", base, ns),
        ("PUT", base, {**ns, "json": {"minReplicas": 1}}),
        ("PUT", base, {"json": {"minReplicas": 1, "namespace": named}}),
        ("DELETE", base, ns),
        ("POST", f"{base}/predict", {**ns, "json": predict}),
        ("GET", f"{base}/logs", ns),
        ("POST", f"{base}/publish", {"json": {"config": {"tenantId": named}}}),
        ("POST", f"{base}/publish", {**ns, "json": {"config": {}}}),
        ("PUT", f"{base}/publish", {"json": {"config": {"tenantId": named}}}),
        ("PUT", f"{base}/publish", {**ns, "json": {"config": {}}}),
        ("GET", f"{base}/publish", ns),
        ("DELETE", f"{base}/publish", ns),
        ("POST", f"{base}/publish/rotate-key", ns),
        ("GET", "/api/published-models", ns),
    ]


def _audited(srv: RunningServer) -> list[dict[str, Any]]:
    with srv.admin() as admin:
        r = admin.get("/api/admin/audit", params={"action": "auth.crossTenant", "limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


@pytest.mark.parametrize("named", [OWNER, "ghost", "admin"])
def test_naming_another_tenant_is_403_whether_or_not_it_exists(
    srv: RunningServer, sklearn_dir: Path, named: str
) -> None:
    before = len(_audited(srv))
    routes = _routes(named, "b-model", str(sklearn_dir)) + _routes(named, "no-such-model", str(sklearn_dir))
    with srv.tenant(CALLER) as c:
        for method, path, kwargs in routes:
            r = c.request(method, path, **kwargs)
            assert r.status_code == 403, (method, path, kwargs, r.text)
            assert r.json()["error"] == f"Insufficient permissions for tenant: {named}", (method, path)
    entries = _audited(srv)[: len(_audited(srv)) - before]
    assert len(entries) == len(routes)
    assert {e["outcome"] for e in entries} == {"denied"}
    assert {e["details"]["named"] for e in entries} == {named}
    assert {e["tenant"] for e in entries} == {CALLER}
    # Nothing happened in either tenant.
    with srv.tenant(OWNER) as b:
        models = b.get("/api/models").json()["models"]
        assert [(m["name"], m["minReplicas"]) for m in models] == [("b-model", 1)]
        assert b.get("/api/models/b-model/publish").status_code == 404
    with srv.tenant(CALLER) as a:
        assert a.get("/api/models").json() == {"models": []}


def test_the_refusal_is_the_same_for_a_tenant_that_exists_and_one_that_does_not(
    srv: RunningServer, sklearn_dir: Path
) -> None:
    with srv.tenant(CALLER) as c:
        for (method, path, real), (_, _, ghost) in zip(
            _routes(OWNER, "b-model", str(sklearn_dir)),
            _routes("tenant-zz", "b-model", str(sklearn_dir)),
            strict=True,
        ):
            one, other = c.request(method, path, **real), c.request(method, path, **ghost)
            assert one.status_code == other.status_code == 403
            assert one.json()["details"] == other.json()["details"]
            assert one.json()["error"].replace(OWNER, "X") == other.json()["error"].replace("tenant-zz", "X")


def test_naming_its_own_tenant_or_nothing_is_allowed(srv: RunningServer, sklearn_dir: Path) -> None:
    with srv.tenant(CALLER) as c:
        assert c.get("/api/models", params={"namespace": CALLER}).json() == {"models": []}
        assert c.get("/api/models", params={"namespace": ""}).status_code == 200
        assert c.get("/api/published-models", params={"namespace": CALLER}).status_code == 200
        # Another tenant's model by name, without naming the tenant: not found, as if it did not exist.
        for r in (
            c.get("/api/models/b-model"),
            c.get("/api/models/b-model", params={"namespace": CALLER}),
            c.get("/api/models/b-model/publish"),
            c.post("/api/models/b-model/publish", json={"config": {"tenantId": CALLER}}),
        ):
            assert r.status_code == 404, (r.request.url, r.text)


def test_the_admin_names_any_tenant(srv: RunningServer) -> None:
    with srv.admin() as admin:
        r = admin.get("/api/models/b-model", params={"namespace": OWNER})
        assert r.status_code == 200 and r.json()["namespace"] == OWNER
        assert admin.get("/api/models", params={"namespace": "ghost"}).json() == {"models": []}


def test_without_a_token_it_is_401_before_anything_else(srv: RunningServer, sklearn_dir: Path) -> None:
    with httpx.Client(base_url=srv.base_url, timeout=30) as anonymous:
        for method, path, kwargs in _routes(OWNER, "b-model", str(sklearn_dir)):
            assert anonymous.request(method, path, **kwargs).status_code == 401, (method, path)
