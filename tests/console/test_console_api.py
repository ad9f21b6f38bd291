"""The routes the console needs, over real HTTP: minting a tenant's token, a publication's usage in
time buckets (exact across gateways, refusals apart), a model's input example, and the console's own
files with their security headers."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from support import IRIS_ROW, RunningServer, deploy, gateway_process, publish, wait_for

from inferbox.gateway.usage import BUCKET_RETENTION, UsageRecorder, bucket_start
from inferbox.store.tables import Publication, UsageBucket


def call(url: str, key: str | None) -> int:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(
        f"{url}/predict", json={"instances": [IRIS_ROW]}, headers=headers, timeout=30
    ).status_code


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(
    request: pytest.FixtureRequest,
    module_servers: Callable[..., RunningServer],
    sklearn_dir: Path,
    postgres_schemas: Callable[[], str],
) -> RunningServer:
    """One control plane per store, with tenant-a's model `my-model` Ready."""
    from support import postgres_url

    url = None if request.param == "sqlite" else postgres_url(postgres_schemas())
    server = module_servers(url)
    deploy(server, sklearn_dir)
    return server


# -- POST /api/admin/tenants/{name}/token --------------------------------------------------------------


def test_an_admin_mints_a_working_token_for_a_tenant(srv: RunningServer) -> None:
    with srv.admin() as admin:
        before = time.time()
        r = admin.post("/api/admin/tenants/tenant-a/token", json={"ttlSeconds": 600})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tenant"] == "tenant-a" and body["subject"] == "tenant-a-user"
        expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00")).timestamp()
        assert before + 598 <= expires <= time.time() + 601
        me = srv.client(body["token"]).get("/api/tenant").json()
        assert me["tenant"] == "tenant-a" and me["isAdmin"] is False
        assert srv.client(body["token"]).get("/api/models/my-model").status_code == 200
        # Without a body: the configured default lifetime.
        default = admin.post("/api/admin/tenants/tenant-a/token").json()
        left = datetime.fromisoformat(default["expiresAt"].replace("Z", "+00:00")).timestamp() - time.time()
        assert abs(left - srv.settings.token_ttl_seconds) < 5
        # Audited, without the token.
        entries = admin.get("/api/admin/audit", params={"action": "tenant.tokenIssued"}).json()["entries"]
        assert entries and entries[0]["tenant"] == "tenant-a" and entries[0]["actor"] == "admin"
        assert body["token"] not in str(entries) and default["token"] not in str(entries)


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"ttlSeconds": 59}, "Field 'ttlSeconds' must be at least 60"),
        ({"ttlSeconds": 30 * 86400 + 1}, "Field 'ttlSeconds' must be at most 2592000"),
        ({"ttlSeconds": "an hour"}, "Field 'ttlSeconds' must be an integer"),
        ({"ttlSeconds": 10**30}, "Field 'ttlSeconds' must be at most 2592000"),
        ([1, 2], None),
    ],
)
def test_a_token_lifetime_out_of_range_is_400(srv: RunningServer, body: Any, details: str | None) -> None:
    with srv.admin() as admin:
        r = admin.post("/api/admin/tenants/tenant-a/token", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "Invalid request format"
    if details:
        assert r.json()["details"] == details


def test_only_the_admin_mints_tokens_and_only_for_tenants_that_exist(srv: RunningServer) -> None:
    with srv.tenant("tenant-a") as tenant:
        r = tenant.post("/api/admin/tenants/tenant-a/token", json={"ttlSeconds": 600})
        assert r.status_code == 403 and r.json()["error"] == "Admin access required"
    with srv.client() as anonymous:
        assert anonymous.post("/api/admin/tenants/tenant-a/token", json={}).status_code == 401
    with srv.admin() as admin:
        r = admin.post("/api/admin/tenants/no-such-tenant/token", json={"ttlSeconds": 600})
        assert r.status_code == 404 and r.json() == {
            "error": "Tenant not found",
            "details": "No tenant named 'no-such-tenant'",
        }
        assert admin.post("/api/admin/tenants/" + "x" * 300 + "/token", json={}).status_code == 404


# -- GET /api/models/{name}/publish/usage --------------------------------------------------------------


def _usage(client: httpx.Client, window: str = "1h", name: str = "my-model") -> dict[str, Any]:
    r = client.get(f"/api/models/{name}/publish/usage", params={"window": window})
    assert r.status_code == 200, r.text
    return r.json()


def test_usage_buckets_count_admitted_and_refused_calls_apart(srv: RunningServer) -> None:
    published = publish(srv, {"rateLimiting": {"requestsPerMinute": 4, "burstLimit": 100}})
    url = f"{srv.gateway_url}{published['externalPath']}"
    try:
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: call(url, published["apiKey"]), range(6)))
        assert sorted(codes) == [200] * 4 + [429] * 2
        assert call(url, "pk_live_wrong") == 401
        assert call(url, None) == 401
        with srv.tenant("tenant-a") as c:
            hour = _usage(c, "1h")
            day = _usage(c, "24h")
            assert c.get("/api/models/my-model/publish/usage", params={"window": "7d"}).status_code == 400
    finally:
        srv.tenant("tenant-a").delete("/api/models/my-model/publish")
    expected = {"requests": 4, "tokens": 0, "unauthorized": 2, "rateLimited": 2}
    assert hour["totals"] == expected and day["totals"] == expected
    assert hour["bucketSeconds"] == 60 and len(hour["buckets"]) == 60
    assert day["bucketSeconds"] == 3600 and len(day["buckets"]) == 24
    # Dense, in order, one step apart, ending with the bucket that holds now.
    starts = [datetime.fromisoformat(b["start"].replace("Z", "+00:00")) for b in hour["buckets"]]
    assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(starts))
    assert starts[-1] <= datetime.now(UTC)
    assert hour["limits"]["requestsPerMinute"] == 4 and hour["limits"]["requestsPerHour"] == 5000
    assert sum(b["requests"] for b in hour["buckets"][-2:]) == 4


def test_usage_is_for_the_owner_and_for_published_models_only(srv: RunningServer) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.get("/api/models/my-model/publish/usage")
        assert r.status_code == 404 and r.json()["error"] == "Published model not found"
        assert c.get("/api/models/nothing-here/publish/usage").status_code == 404
    publish(srv)
    try:
        with srv.tenant("tenant-b") as other:
            r = other.get("/api/models/my-model/publish/usage")
            assert r.status_code == 404
        with srv.admin() as admin:
            assert _usage_admin(admin)["namespace"] == "tenant-a"
        with srv.client() as anonymous:
            assert anonymous.get("/api/models/my-model/publish/usage").status_code == 401
    finally:
        srv.tenant("tenant-a").delete("/api/models/my-model/publish")


def _usage_admin(admin: httpx.Client) -> dict[str, Any]:
    r = admin.get("/api/models/my-model/publish/usage", params={"namespace": "tenant-a"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_new_publication_starts_with_an_empty_history(srv: RunningServer) -> None:
    """SQLite may give a new publication the id of the one unpublished before it: its history is not
    inherited."""
    first = publish(srv, {"rateLimiting": {"requestsPerMinute": 1000, "burstLimit": 100}})
    assert call(f"{srv.gateway_url}{first['externalPath']}", first["apiKey"]) == 200
    with srv.tenant("tenant-a") as c:
        assert _usage(c)["totals"]["requests"] == 1
        assert c.delete("/api/models/my-model/publish").status_code == 200
    publish(srv)
    try:
        with srv.tenant("tenant-a") as c:
            assert _usage(c)["totals"] == {"requests": 0, "tokens": 0, "unauthorized": 0, "rateLimited": 0}
    finally:
        srv.tenant("tenant-a").delete("/api/models/my-model/publish")


def test_two_gateways_add_up_in_the_same_buckets(srv: RunningServer) -> None:
    published = publish(srv, {"rateLimiting": {"requestsPerMinute": 1000, "burstLimit": 100}})
    try:
        with gateway_process(srv) as (other, _proc):
            path, key = published["externalPath"], published["apiKey"]
            with ThreadPoolExecutor(8) as pool:
                here = list(pool.map(lambda _: call(f"{srv.gateway_url}{path}", key), range(10)))
                there = list(pool.map(lambda _: call(f"{other}{path}", key), range(10)))
            assert here == [200] * 10 and there == [200] * 10
            assert call(f"{other}{path}", "pk_live_wrong") == 401
            with srv.tenant("tenant-a") as c:
                # The other gateway writes its counts within a second of the calls.
                totals = wait_for(
                    lambda: (t := _usage(c)["totals"])["requests"] == 20 and t["unauthorized"] == 1 and t,
                    timeout=15,
                )
        assert totals == {"requests": 20, "tokens": 0, "unauthorized": 1, "rateLimited": 0}
    finally:
        srv.tenant("tenant-a").delete("/api/models/my-model/publish")


def test_buckets_past_retention_and_of_removed_publications_are_pruned(srv: RunningServer) -> None:
    published = publish(srv)
    store = srv.platform.store
    with store.session() as session:
        pub_id = session.scalar(select(Publication.id).where(Publication.external_path == "/models/my-model"))
    old = datetime.now(UTC) - BUCKET_RETENTION - timedelta(minutes=5)
    kept = datetime.now(UTC) - BUCKET_RETENTION + timedelta(minutes=5)
    gone_id = 10_000_000 + pub_id
    try:
        with store.session() as session:
            session.add_all(
                [
                    UsageBucket(publication_id=pub_id, start=bucket_start(old), requests=7),
                    UsageBucket(publication_id=pub_id, start=bucket_start(kept), requests=5),
                    UsageBucket(publication_id=gone_id, start=bucket_start(kept), requests=3),
                ]
            )
        recorder = UsageRecorder(store)
        recorder.record(pub_id)
        asyncio.run(recorder.flush())
        with store.session() as session:
            rows = session.execute(
                select(UsageBucket.publication_id, UsageBucket.requests)
                .where(UsageBucket.publication_id.in_([pub_id, gone_id]))
                .order_by(UsageBucket.start)
            ).all()
        assert [tuple(r) for r in rows] == [(pub_id, 5), (pub_id, 1)]
        assert published["apiKey"]
    finally:
        srv.tenant("tenant-a").delete("/api/models/my-model/publish")


# -- GET /api/models/{name}/example --------------------------------------------------------------------


def test_the_input_example_fits_the_model(srv: RunningServer) -> None:
    with srv.tenant("tenant-a") as c:
        example = c.get("/api/models/my-model/example").json()
        assert example["v1"] == {"instances": [[1.0, 2.0, 3.0, 4.0]]}
        assert example["v2"]["inputs"][0]["shape"] == [1, 4]
        for body in (example["v1"], example["v2"]):
            r = c.post("/api/models/my-model/predict", json={"inputData": body})
            assert r.status_code == 200, r.text
        assert c.get("/api/models/nothing-here/example").status_code == 404
    with srv.tenant("tenant-b") as other:
        assert other.get("/api/models/my-model/example").status_code == 404


# -- the console's files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/", 200, "text/html"),
        ("/console/app.css", 200, "text/css"),
        ("/console/js/main.js", 200, "javascript"),
        ("/console/js/screens/publish.js", 200, "javascript"),
        ("/console/nothing.js", 404, None),
        ("/console/%2e%2e/__init__.py", 404, None),
    ],
)
def test_console_files_carry_a_strict_csp(
    srv: RunningServer, path: str, status: int, kind: str | None
) -> None:
    r = httpx.get(srv.base_url + path, timeout=10)
    assert r.status_code == status
    if kind:
        assert kind in r.headers["content-type"]
    policy = r.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_page_has_no_inline_script_or_style(srv: RunningServer) -> None:
    page = httpx.get(srv.base_url + "/", timeout=10).text
    assert "<script>" not in page and "<style" not in page and " style=" not in page and "onclick" not in page
    assert '<script type="module" src="/console/js/main.js"></script>' in page
    # The API keeps its own answers: JSON, no console page.
    r = httpx.get(srv.base_url + "/api/models", timeout=10)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/json")
