"""The API's own rate limits: a burst per second and a budget per minute, per caller."""

from __future__ import annotations

import secrets

import pytest
from support import REDIS_URL

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-policy", "ratelimit")


def _assert_refusal(r) -> None:
    assert r.status_code == 429
    assert r.json()["error"] == "Rate limit exceeded"
    assert int(r.headers["retry-after"]) >= 1
    for h in HEADERS:
        assert h in r.headers, h


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
def test_eleventh_request_in_a_second_is_429(make_server, redis: bool) -> None:
    srv = make_server(rate_limit_burst=10, rate_limit_requests=100, redis_url=REDIS_URL if redis else None)
    token = srv.tenant_token("tenant-a")
    with srv.client(token) as c:
        answers = [c.get("/api/tenant") for _ in range(11)]
    assert [r.status_code for r in answers[:10]] == [200] * 10
    for r in answers[:10]:
        for h in HEADERS:
            assert h in r.headers, h
    assert answers[0].headers["x-ratelimit-limit"] == "100"
    assert answers[0].headers["x-ratelimit-remaining"] == "99"
    assert answers[0].headers["ratelimit-policy"] == '"burst";q=10;w=1, "minute";q=100;w=60'
    _assert_refusal(answers[10])
    assert "second" in answers[10].json()["details"]


def test_hundred_and_first_request_in_a_minute_is_429(make_server) -> None:
    # A burst as large as the minute budget, so that only the minute budget can refuse.
    srv = make_server(rate_limit_burst=1000, rate_limit_requests=100)
    token = srv.tenant_token("tenant-a")
    with srv.client(token) as c:
        codes = [c.get("/api/tenant").status_code for _ in range(100)]
        refused = c.get("/api/tenant")
    assert codes == [200] * 100
    _assert_refusal(refused)
    assert "minute" in refused.json()["details"]
    assert refused.headers["x-ratelimit-remaining"] == "0"


def test_budgets_are_per_principal(make_server) -> None:
    srv = make_server(rate_limit_burst=1000, rate_limit_requests=5)
    with srv.client(srv.tenant_token("tenant-a")) as a, srv.client(srv.tenant_token("tenant-b")) as b:
        assert [a.get("/api/tenant").status_code for _ in range(6)] == [200] * 5 + [429]
        assert b.get("/api/tenant").status_code == 200


def test_two_servers_sharing_redis_share_one_budget(make_server) -> None:
    prefix = f"ibx-shared-{secrets.token_hex(4)}"
    shared = {
        "rate_limit_burst": 1000,
        "rate_limit_requests": 10,
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
    }
    first = make_server(**shared)
    # Another control plane with its own store (one store has one local runtime owner) and the same
    # secret: the budget they share lives in Redis alone.
    second = make_server(**{**shared, "jwt_secret": first.settings.jwt_secret})
    second.platform.tenants.create("tenant-a")
    token = first.tenant_token("tenant-a")
    codes = []
    with first.client(token) as c1, second.client(token) as c2:
        for i in range(12):
            codes.append((c1 if i % 2 == 0 else c2).get("/api/tenant").status_code)
    assert codes == [200] * 10 + [429, 429]


def test_unauthenticated_callers_are_limited_by_address(make_server) -> None:
    srv = make_server(rate_limit_burst=1000, rate_limit_requests=3)
    with srv.client() as c:
        codes = [
            c.post("/api/admin/login", json={"username": "x", "password": "y"}).status_code for _ in range(4)
        ]
    assert codes == [401, 401, 401, 429]
