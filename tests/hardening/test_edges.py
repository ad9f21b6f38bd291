"""Edges: body limits, number ranges, deep JSON, strict types, JWT claim types, the answer to a bug, the
data dir's permissions. Each case is a finding of the hostile review, kept fixed here."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from support import IRIS_ROW, RunningServer, deploy, publish

from inferbox.api.middleware import CHAT_BODY_BYTES, CONTROL_BODY_BYTES, VALIDATE_KEY_BODY_BYTES

INFERENCE_LIMIT = 1024 * 1024  # this module's INFERBOX_MAX_BODY_BYTES


@pytest.fixture(scope="module")
def srv(module_servers, sklearn_dir: Path) -> RunningServer:
    server = module_servers(max_body_bytes=INFERENCE_LIMIT)
    deploy(server, sklearn_dir)
    return server


@pytest.fixture(scope="module")
def key(srv: RunningServer) -> str:
    return publish(srv)["apiKey"]


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked): the limit must hold on the bytes themselves."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


# -- body limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "limit", "auth"),
    [
        ("/api/models", CONTROL_BODY_BYTES, "tenant"),
        ("/api/admin/tenants", CONTROL_BODY_BYTES, "admin"),
        ("/api/models/my-model/publish", CONTROL_BODY_BYTES, "tenant"),
        ("/api/validate-api-key", VALIDATE_KEY_BODY_BYTES, None),
        ("/api/admin/login", CONTROL_BODY_BYTES, None),
        ("/api/models/my-model/predict", INFERENCE_LIMIT, "tenant"),
        ("/api/models/my-model/chat", CHAT_BODY_BYTES, "tenant"),
    ],
)
def test_oversized_bodies_are_413_before_they_are_read(
    srv: RunningServer, path: str, limit: int, auth: str | None
) -> None:
    token = {"tenant": srv.tenant_token("tenant-a"), "admin": srv.admin_token(), None: None}[auth]
    with srv.client(token) as c:
        declared = c.post(path, content=b" " * (limit + 1), headers={"Content-Type": "application/json"})
        streamed = c.post(path, content=_chunks(limit + 1), headers={"Content-Type": "application/json"})
    for r in (declared, streamed):
        assert r.status_code == 413, (path, r.text)
        assert r.json() == {
            "error": "Request body too large",
            "details": f"At most {limit} bytes on this route",
        }


def test_a_lying_content_length_far_past_the_limit_is_refused_at_once(srv: RunningServer) -> None:
    """100 MB announced, nothing sent: the answer comes without waiting for a byte of it."""
    import socket

    port = int(srv.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /api/validate-api-key HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_predict_takes_bodies_up_to_the_inference_limit(srv: RunningServer) -> None:
    rows = [IRIS_ROW] * 20_000  # ~600 KB: parsed in a worker thread, not on the gateway's loop
    body = json.dumps({"inputData": {"instances": rows}}).encode()
    assert CONTROL_BODY_BYTES < len(body) < INFERENCE_LIMIT
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/my-model/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [2] * 20_000


def test_the_gateway_refuses_bodies_over_the_same_limit(srv: RunningServer, key: str) -> None:
    url = f"{srv.gateway_url}/models/my-model/predict"
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    declared = httpx.post(url, content=b" " * (INFERENCE_LIMIT + 1), headers=headers, timeout=30)
    streamed = httpx.post(url, content=_chunks(INFERENCE_LIMIT + 1), headers=headers, timeout=30)
    for r in (declared, streamed):
        assert r.status_code == 413
        assert r.json()["error"] == "Request body too large"
        assert str(INFERENCE_LIMIT) in r.json()["details"]


# -- numbers, nesting, types ------------------------------------------------------------------------

HUGE = [2**31, 2**63, 10**30]


def test_huge_numbers_are_400_on_both_stores(server: RunningServer, sklearn_dir: Path) -> None:
    body = {"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)}
    limits = ("burstLimit", "requestsPerMinute", "requestsPerHour", "tokensPerHour")
    with server.tenant("tenant-a") as c:
        for value in HUGE:
            for field in ("scaleTarget", "minReplicas", "maxReplicas"):
                r = c.post("/api/models", json={**body, field: value})
                assert r.status_code == 400, (field, r.text)
                assert field in r.json()["details"]
        assert c.get("/api/models").json() == {"models": []}
        assert c.post("/api/models", json=body).status_code == 201
        for value in HUGE:
            for field in limits:
                r = c.post("/api/models/m/publish", json={"config": {"rateLimiting": {field: value}}})
                assert r.status_code == 400, (field, r.text)
                assert (
                    r.json()["details"]
                    == f"Field 'config.rateLimiting.{field}' must be at most 1,000,000,000"
                )
        assert c.get("/api/published-models").json()["total"] == 0
        assert c.post("/api/models/m/publish", json={"config": {}}).status_code == 201
        for value in HUGE:
            r = c.put("/api/models/m/publish", json={"config": {"rateLimiting": {"burstLimit": value}}})
            assert r.status_code == 400
            r = c.put("/api/models/m", json={"scaleTarget": value})
            assert r.status_code == 400
        assert c.get("/api/models/m/publish").json()["rateLimiting"]["burstLimit"] == 10
        assert c.get("/api/models/m").json()["scaleTarget"] == 10


@pytest.mark.parametrize(
    "since", ["999999999d", "99999999999999999999s", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]
)
def test_audit_since_extremes_are_400(srv: RunningServer, since: str) -> None:
    with srv.admin() as c:
        r = c.get("/api/admin/audit", params={"since": since})
    assert r.status_code == 400
    assert "since" in r.json()["details"]


@pytest.mark.parametrize("value", [True, "1", 1.0, [1], {"n": 1}])
def test_replica_counts_must_be_whole_numbers(srv: RunningServer, sklearn_dir: Path, value: object) -> None:
    body = {"name": "strict", "framework": "sklearn", "storageUri": str(sklearn_dir), "minReplicas": value}
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models", json=body)
        assert r.status_code == 400, r.text
        assert "minReplicas" in r.json()["details"]
        assert c.get("/api/models/strict").status_code == 404
        r = c.put("/api/models/my-model", json={"maxReplicas": value})
        assert r.status_code == 400


def test_deep_json_is_400_never_a_recursion_error(srv: RunningServer) -> None:
    deep_key = b"[" * (VALIDATE_KEY_BODY_BYTES - 10)
    deep_control = b'{"name": ' + b"[" * (CONTROL_BODY_BYTES - 100) + b"}"
    with srv.client() as c:
        r = c.post("/api/validate-api-key", content=deep_key, headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json() == {"error": "Invalid request format", "details": "Request body must be valid JSON"}
        # 100k levels: past the route's size limit before it is parsed at all.
        r = c.post(
            "/api/validate-api-key", content=b"[" * 100_000, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
    with srv.admin() as c:
        r = c.post("/api/admin/tenants", content=deep_control, headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert set(r.json()) == {"error", "details"}
    with srv.tenant("tenant-a") as c:
        body = b'{"inputData": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        r = c.post("/api/models/my-model/predict", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_claims_must_be_numbers(srv: RunningServer, claim: str) -> None:
    now = int(time.time())
    claims = {"sub": "u", "tenant": "tenant-a", "exp": now + 600, "iat": now, "nbf": now}
    claims[claim] = str(claims[claim])
    token = jwt.encode(claims, srv.settings.jwt_secret or "", algorithm="HS256")
    with srv.client(token) as c:
        r = c.get("/api/tenant")
    assert r.status_code == 401
    assert r.json()["details"] in (f"Token's '{claim}' claim must be a number", "Token is invalid")


# -- a bug's answer -----------------------------------------------------------------------------------


def test_a_bug_is_one_log_record_and_the_connection_stays_usable(
    srv: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("internals")

    srv._server.config.app.add_api_route("/api/broken-for-test", broken)  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR), srv.client() as c:
        first = c.get("/api/broken-for-test")
        # The same keep-alive connection answers the next request.
        second = c.get("/health")
    assert first.status_code == 500
    assert first.json()["error"] == "Internal server error"
    assert "connection" not in {k.lower() for k in first.headers} or first.headers["connection"] != "close"
    assert second.status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "broken-for-test" in r.getMessage()]
    assert len(errors) == 1
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


# -- the data dir --------------------------------------------------------------------------------------


def test_the_data_dir_and_the_sqlite_file_are_private(srv: RunningServer) -> None:
    data_dir = srv.settings.data_dir
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    for name in ("inferbox.db", "inferbox.db-wal"):
        path = data_dir / name
        if path.exists():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
