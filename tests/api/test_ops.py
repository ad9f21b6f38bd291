"""Health, metrics, request ids, OpenAPI and CORS."""

from __future__ import annotations

import re
import secrets

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from support import POSTGRES_URL, RunningServer


def test_health_checks_the_store(server: RunningServer) -> None:
    with server.client() as c:
        r = c.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"
    expected = "postgresql" if server.settings.effective_database_url.startswith("postgresql") else "sqlite"
    assert r.json()["store"] == expected
    assert r.json()["checks"]["store"] == {"status": "up", "dialect": expected}


def test_health_is_503_when_the_store_is_gone(make_server) -> None:
    """A real outage: the PostgreSQL database stops taking connections and its sessions are cut."""
    name = f"ibx_health_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = (
                POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
            )
            srv = make_server(url)
            with srv.client() as c:
                assert c.get("/health").status_code == 200
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )
                r = c.get("/health")
            assert r.status_code == 503
            assert r.json()["error"] == "Store unavailable"
            srv.stop()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_metrics_count_requests_by_route_template(server: RunningServer) -> None:
    with server.admin() as c:
        c.delete("/api/admin/tenants/none-such")
        c.get("/api/admin/tenants")
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.labels.get("route"), s.labels.get("method"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(r.text)
        if family.name == "inferbox_http_requests"
        for s in family.samples
        if s.name == "inferbox_http_requests_total"
    }
    assert samples[("/api/admin/tenants/{name}", "DELETE", "404")] == 1
    assert samples[("/api/admin/tenants", "GET", "200")] == 1
    assert samples[("/api/admin/login", "POST", "200")] == 1
    assert "inferbox_http_request_duration_seconds_bucket" in r.text


def test_request_id_is_echoed_or_generated(server: RunningServer) -> None:
    with server.client() as c:
        echoed = c.get("/health", headers={"X-Request-ID": "abc-123"})
        generated = c.get("/health")
        hostile = c.get("/health", headers={"X-Request-ID": "x y; drop table"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    # A hostile id is not echoed: the request gets a fresh one of inferbox's own.
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
    assert hostile.headers["x-request-id"] != generated.headers["x-request-id"]


def test_openapi_and_docs(server: RunningServer) -> None:
    with server.client() as c:
        spec = c.get("/api/openapi.json")
        docs = c.get("/api/docs")
    assert spec.status_code == 200
    assert "/api/admin/login" in spec.json()["paths"]
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_cors_is_closed_by_default_and_follows_cors_origins(make_server) -> None:
    closed = make_server()
    opened = make_server(cors_origins=("https://console.example.com",))
    preflight = {
        "Origin": "https://console.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization,Content-Type",
    }
    with closed.client() as c:
        r = c.options("/api/admin/login", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with opened.client() as c:
        r = c.options("/api/admin/login", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://console.example.com"
        r = c.options("/api/admin/login", headers={**preflight, "Origin": "https://evil.example"})
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
