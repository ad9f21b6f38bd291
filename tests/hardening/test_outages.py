"""Outages of what inferbox depends on, for real: a Redis of the test's own is killed and started again,
a PostgreSQL database stops taking connections. The policies under test (docs/reliability.md):

- Redis down: the gateway refuses with a JSON 503 and Retry-After (its limits are contracts); the API
  keeps working on in-process limits; both /health endpoints say so; a few log lines, not thousands;
  everything recovers by itself when Redis is back.
- Store down: the API answers a JSON 503 with Retry-After; the gateway keeps serving the routes and keys
  it holds and keeps counting usage, which reaches the store once it is back.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import httpx
import psycopg
import pytest
from support import IRIS_ROW, POSTGRES_URL, RedisServer, deploy, publish, wait_for


def call(url: str, key: str) -> httpx.Response:
    return httpx.post(url, json={"instances": [IRIS_ROW]}, headers={"X-API-Key": key}, timeout=30)


def test_redis_outage_is_a_clear_503_at_the_gateway_and_survivable_in_the_api(
    make_server, own_redis: RedisServer, sklearn_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = make_server(redis_url=own_redis.url)
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    gw = f"{srv.gateway_url}/models/my-model/predict"
    assert call(gw, key).status_code == 200

    with caplog.at_level(logging.WARNING):
        own_redis.stop()
        answers = [call(gw, key) for _ in range(200)]
        assert {r.status_code for r in answers} == {503}
        refused = answers[-1]
        assert refused.json()["error"] == "Service unavailable"
        assert "Redis" in refused.json()["details"]
        assert int(refused.headers["retry-after"]) >= 1

        with srv.tenant("tenant-a") as c:
            assert c.get("/api/models/my-model").status_code == 200
            assert c.get("/api/published-models").status_code == 200
        with srv.client() as c:
            login = c.post("/api/admin/login", json={"username": "admin", "password": "password"})
            assert login.status_code == 200
            health = c.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["redis"]["status"] == "down"
        gateway_health = httpx.get(f"{srv.gateway_url}/health", timeout=10)
        assert gateway_health.status_code == 503
        assert gateway_health.json()["checks"]["redis"]["status"] == "down"

    outage_lines = [r for r in caplog.records if "redis" in r.getMessage().lower()]
    assert 1 <= len(outage_lines) <= 5, [r.getMessage() for r in outage_lines]
    assert not [r for r in caplog.records if r.exc_info]

    own_redis.start()
    wait_for(lambda: call(gw, key).status_code == 200, timeout=15)
    with srv.client() as c:
        assert wait_for(lambda: c.get("/health").json()["status"] == "healthy", timeout=15)
    assert httpx.get(f"{srv.gateway_url}/health", timeout=10).status_code == 200


def test_store_outage_is_a_clear_503_and_loses_no_usage(make_server, sklearn_dir: Path) -> None:
    name = f"ibx_outage_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = (
                POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
            )
            srv = make_server(url)
            deploy(srv, sklearn_dir)
            key = publish(srv)["apiKey"]
            gw = f"{srv.gateway_url}/models/my-model/predict"
            token = srv.tenant_token("tenant-a")
            assert call(gw, key).status_code == 200

            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            with srv.client(token) as c:
                for path in ("/api/published-models", "/api/models/my-model/publish"):
                    r = c.get(path)
                    assert r.status_code == 503, (path, r.text)
                    assert r.json() == {
                        "error": "Service unavailable",
                        "details": "The store is unreachable; try again shortly",
                    }
                    assert r.headers["retry-after"] == "5"
                r = c.post("/api/models", json={"name": "new", "framework": "sklearn", "storageUri": "/x"})
                assert r.status_code in (400, 503)
            with srv.client() as c:
                login = c.post("/api/admin/login", json={"username": "admin", "password": "password"})
                assert login.status_code == 503
                assert c.get("/health").status_code == 503
            # The gateway serves what it holds, and counts it.
            during = [call(gw, key).status_code for _ in range(5)]
            assert during == [200] * 5
            assert wait_for(
                lambda: httpx.get(f"{srv.gateway_url}/health").json()["checks"]["store"]["status"] == "down",
                timeout=10,
            )

            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            with srv.client(token) as c:
                usage = wait_for(
                    lambda: (
                        (r := c.get("/api/models/my-model/publish")).status_code == 200
                        and r.json()["usage"]["totalRequests"] == 6
                        and r.json()["usage"]
                    ),
                    timeout=20,
                )
                assert usage["totalRequests"] == 6
                assert c.get("/health").status_code == 200
            srv.stop()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
