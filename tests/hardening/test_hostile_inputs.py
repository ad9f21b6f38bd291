"""The hostile-input table: every route and the gateway, fed what an attacker or a broken client sends.

Each case must get a clean 4xx in the error shape, and change nothing: the store (tenants, models,
publications, keys) and the runtime's replicas are compared before and after every case. Each case
calls from its own loopback address, so that no case's refusals count against another's budget.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import select
from support import IRIS_ROW, RunningServer, client_from, deploy, publish

from inferbox.store.tables import ApiKey, Model, Publication, Tenant


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    who: str = (
        "tenant-b"  # tenant-a (owns the models), tenant-b (another tenant), admin, anonymous, or a token
    )
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None
    expect: tuple[int, ...] = (400,)
    gateway: bool = False


DEEP = "[" * 3000 + "]" * 3000
INFERENCE_LIMIT = 1024 * 1024
SSRF = [
    "http://127.1/m",
    "http://0x7f.1/m",
    "http://2130706433/m",
    "http://[::1]/m",
    "http://[::ffff:127.0.0.1]/m",
    "http://localhost/m",
    "http://10.0.0.5/m",
    "http://192.168.1.1/m",
    "http://172.16.0.1/m",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/m",
    "https://0.0.0.0/m",
    "http://100.64.0.1/m",
    "http://metadata.google.internal/computeMetadata/v1/",
]
MODEL_ROUTES = [
    ("GET", "/api/models/a-model"),
    ("PUT", "/api/models/a-model"),
    ("DELETE", "/api/models/a-model"),
    ("POST", "/api/models/a-model/predict"),
    ("POST", "/api/models/a-model/chat"),
    ("GET", "/api/models/a-model/logs"),
    ("GET", "/api/models/a-model/publish"),
    ("PUT", "/api/models/a-model/publish"),
    ("DELETE", "/api/models/a-model/publish"),
    ("POST", "/api/models/a-model/publish/rotate-key"),
]
ADMIN_ROUTES = [
    ("GET", "/api/admin/system"),
    ("GET", "/api/admin/tenants"),
    ("POST", "/api/admin/tenants"),
    ("DELETE", "/api/admin/tenants/tenant-a"),
    ("POST", "/api/admin/kubectl"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/logs"),
]
JSON_ROUTES = [
    ("POST", "/api/models", "tenant-b"),
    ("PUT", "/api/models/a-model", "tenant-a"),
    ("POST", "/api/models/a-model/predict", "tenant-a"),
    ("POST", "/api/models/a-model/chat", "tenant-a"),
    ("POST", "/api/models/b-model/publish", "tenant-b"),
    ("PUT", "/api/models/a-model/publish", "tenant-a"),
    ("POST", "/api/admin/tenants", "admin"),
    ("POST", "/api/admin/kubectl", "admin"),
    ("POST", "/api/admin/login", "anonymous"),
]


def _body_for(method: str, path: str) -> dict[str, Any]:
    if path.endswith("/predict"):
        return {"inputData": {"instances": [IRIS_ROW]}}
    if path.endswith("/chat"):
        return {"messages": [{"role": "user", "content": "hello"}]}
    if path.endswith("/publish"):
        return {"config": {}}
    if path.endswith("/kubectl"):
        return {"command": "get pods"}
    if path.endswith("/tenants"):
        return {"name": "tenant-z"}
    return {"minReplicas": 1}


def cases() -> Iterator[Case]:
    # -- cross-tenant access on every route: another tenant's model is a 404, never its data --------
    for method, path in MODEL_ROUTES:
        yield Case(f"cross-tenant {method} {path}", method, path, json=_body_for(method, path), expect=(404,))
        yield Case(
            f"cross-tenant ?namespace {method} {path}",
            method,
            path,
            json=_body_for(method, path),
            params={"namespace": "tenant-a"},
            expect=(403, 404),
        )
        yield Case(f"anonymous {method} {path}", method, path, who="anonymous", expect=(401,))
    for method, path in ADMIN_ROUTES:
        body = _body_for(method, path) if method == "POST" else None
        yield Case(f"tenant on admin {method} {path}", method, path, json=body, expect=(403,))
        yield Case(
            f"anonymous on admin {method} {path}", method, path, who="anonymous", json=body, expect=(401,)
        )
    yield Case(
        "create in another namespace",
        "POST",
        "/api/models",
        json={
            "name": "sneaky",
            "framework": "sklearn",
            "storageUri": "/nonexistent",
            "namespace": "tenant-a",
        },
        expect=(400, 403),
    )

    # -- bodies: size, nesting, types, encodings ------------------------------------------------------
    for method, path, who in JSON_ROUTES:
        tag = f"{method} {path}"
        # Predict's limit is the inference one, chat's 1 MiB: there the blank object is read, and lacks
        # inputData (messages).
        yield Case(
            f"oversized {tag}",
            method,
            path,
            who,
            content=b"{" + b" " * 70_000 + b"}",
            headers={"Content-Type": "application/json"},
            expect=(400,) if path.endswith(("/predict", "/chat")) else (413,),
        )
        yield Case(
            f"deep nesting {tag}",
            method,
            path,
            who,
            content=DEEP.encode(),
            headers={"Content-Type": "application/json"},
        )
        yield Case(
            f"invalid utf-8 {tag}",
            method,
            path,
            who,
            content=b'{"name": "\xff\xfe"}',
            headers={"Content-Type": "application/json"},
        )
        yield Case(
            f"not json {tag}",
            method,
            path,
            who,
            content=b"{name: 1",
            headers={"Content-Type": "application/json"},
        )
        yield Case(f"a list {tag}", method, path, who, json=[1, 2, 3])
        yield Case(
            f"form-encoded {tag}",
            method,
            path,
            who,
            content=b"name=x&framework=sklearn",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            expect=(400, 415),
        )
        yield Case(
            f"text/plain {tag}",
            method,
            path,
            who,
            content=b'{"name": "x"}',
            headers={"Content-Type": "text/plain"},
            expect=(400, 415),
        )
    yield Case(
        "validate-api-key deep",
        "POST",
        "/api/validate-api-key",
        "anonymous",
        content=b"[" * 4000,
        headers={"Content-Type": "application/json"},
    )
    yield Case(
        "validate-api-key huge",
        "POST",
        "/api/validate-api-key",
        "anonymous",
        content=b"[" * 100_000,
        headers={"Content-Type": "application/json"},
        expect=(413,),
    )
    yield Case("validate-api-key not an object", "POST", "/api/validate-api-key", "anonymous", json=["k"])
    yield Case(
        "validate-api-key CRLF header",
        "POST",
        "/api/validate-api-key",
        "anonymous",
        headers={"X-API-Key": "pk_live_x%0d%0aSet-Cookie: a=b"},
        expect=(401,),
    )

    # -- fields: numbers, names, traversal, CR/LF ----------------------------------------------------
    model = {"name": "evil", "framework": "sklearn", "storageUri": "/nonexistent"}
    for field_name, value in [
        ("scaleTarget", 2**63),
        ("scaleTarget", -1),
        ("scaleTarget", 1.5),
        ("scaleTarget", "10"),
        ("minReplicas", True),
        ("maxReplicas", 10**30),
        ("maxReplicas", -3),
        ("name", "../../etc"),
        ("name", "a\r\nb"),
        ("name", "A" * 300),
        ("name", ""),
        ("name", 7),
        ("framework", "sklearn\x00"),
        ("scaleMetric", "concurrency; drop table"),
        ("storageUri", "file:///../../etc/passwd"),
        ("storageUri", "/etc/../etc/passwd"),
        ("storageUri", "file://evil.example/etc"),
        ("storageUri", "x" * 3000),
        ("storageUri", "javascript:alert(1)"),
    ]:
        yield Case(
            f"model {field_name}={value!r:.40}", "POST", "/api/models", json={**model, field_name: value}
        )
    for uri in SSRF:
        yield Case(f"ssrf storageUri {uri}", "POST", "/api/models", json={**model, "storageUri": uri})
    for uri in (
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_PING",
        "http://user:pw@example.com/",
    ):
        yield Case(
            f"ssrf custom connection (admin) {uri}",
            "POST",
            "/api/models/a-model/predict",
            "admin",
            json={
                "inputData": {"instances": [IRIS_ROW]},
                "connectionSettings": {"useCustom": True, "url": uri},
            },
        )
    yield Case(
        "custom connection by a tenant",
        "POST",
        "/api/models/a-model/predict",
        "tenant-a",
        json={
            "inputData": {"instances": [IRIS_ROW]},
            "connectionSettings": {"useCustom": True, "url": "http://127.0.0.1:1/"},
        },
        expect=(403,),
    )
    limits = {"burstLimit": 0, "requestsPerMinute": 2**40, "requestsPerHour": -5, "tokensPerHour": "lots"}
    for name, value in limits.items():
        yield Case(
            f"publish {name}={value!r}",
            "POST",
            "/api/models/b-model/publish",
            json={"config": {"rateLimiting": {name: value}}},
        )
    for path_value in (
        "/../api/admin",
        "/api",
        "//double",
        "/models/x/predict",
        "relative",
        "/a\r\nb",
        "/" + "a" * 300,
        "/health",
        "/%2e%2e/x",
    ):
        yield Case(
            f"publish externalPath {path_value!r:.30}",
            "POST",
            "/api/models/b-model/publish",
            json={"config": {"externalPath": path_value}},
        )
    for host in (
        "http://evil.example",
        "evil.example:8080",
        "a..b",
        "-bad.example",
        "x" * 300,
        "UPPER.example/path",
        "127.0.0.1",
    ):
        yield Case(
            f"publish publicHostname {host!r:.30}",
            "POST",
            "/api/models/b-model/publish",
            json={"config": {"publicHostname": host}},
        )
    yield Case(
        "publish huge metadata",
        "POST",
        "/api/models/b-model/publish",
        json={"config": {"metadata": {"d": "x" * 20_000}}},
    )
    yield Case(
        "publish allowedTenants not names",
        "POST",
        "/api/models/b-model/publish",
        json={"config": {"authentication": {"allowedTenants": ["../x", 3]}}},
    )
    yield Case(
        "publish requireApiKey string",
        "POST",
        "/api/models/b-model/publish",
        json={"config": {"authentication": {"requireApiKey": "no"}}},
    )
    yield Case("tenant name traversal", "POST", "/api/admin/tenants", "admin", json={"name": "../admin"})
    yield Case("tenant name reserved", "POST", "/api/admin/tenants", "admin", json={"name": "kube-system"})
    yield Case("tenant name CRLF", "POST", "/api/admin/tenants", "admin", json={"name": "a\r\nb"})
    for command in (
        "delete pods --all",
        "get secrets -A",
        "get pods; rm -rf /",
        "get pods --server=http://x",
        "get pods -o go-template={{.}}",
        "get pods --kubeconfig=/etc/passwd",
        "get --raw /api",
        "logs -f x",
        "get pods $(id)",
        "get pods\nget secrets",
        "x" * 2100,
    ):
        yield Case(
            f"kubectl {command!r:.30}", "POST", "/api/admin/kubectl", "admin", json={"command": command}
        )

    # -- query strings --------------------------------------------------------------------------------
    for params in (
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "1e3"},
        {"since": "999999999d"},
        {"since": "yesterday"},
        {"since": "9999-12-31T23:59:59-23:59"},
        {"tenant": "x" * 100},
        {"action": "y" * 100},
    ):
        yield Case(f"audit {params}", "GET", "/api/admin/audit", "admin", params=params)
    for params in ({"lines": "0"}, {"lines": "-5"}, {"lines": "ten"}, {"level": "loud"}):
        yield Case(f"service logs {params}", "GET", "/api/admin/logs", "admin", params=params)
    for params in ({"lines": "0"}, {"lines": "2.5"}, {"lines": "99999999999999999999999999999x"}):
        yield Case(f"model logs {params}", "GET", "/api/models/a-model/logs", "tenant-a", params=params)
    for grace in ("-1", "99999999999", "1.5", "soon"):
        yield Case(
            f"rotate grace {grace}",
            "POST",
            "/api/models/a-model/publish/rotate-key",
            "tenant-a",
            params={"gracePeriodSeconds": grace},
        )
    yield Case(
        "delete tenant force not a bool",
        "DELETE",
        "/api/admin/tenants/tenant-a",
        "admin",
        params={"force": "maybe"},
    )

    # -- tokens --------------------------------------------------------------------------------------
    for name in (
        "alg none",
        "empty secret",
        "wrong secret",
        "expired",
        "not yet valid",
        "exp as string",
        "tenant as list",
        "no tenant",
        "admin claim from a tenant",
        "garbage",
        "two dots",
        "huge",
    ):
        yield Case(f"jwt {name}", "GET", "/api/models", who=f"token:{name}", expect=(401,))
    yield Case(
        "token in the query string",
        "GET",
        "/api/models",
        who="anonymous",
        params={"token": "x"},
        expect=(401,),
    )
    yield Case(
        "basic auth",
        "GET",
        "/api/models",
        who="anonymous",
        headers={"Authorization": "Basic YTpi"},
        expect=(401,),
    )

    # -- the gateway ---------------------------------------------------------------------------------
    for name, kwargs in [
        ("no key", {}),
        ("wrong key", {"headers": {"X-API-Key": "pk_live_" + "A" * 43}}),
        ("another model's key", {"headers": {"X-API-Key": "{b_key}"}}),
        ("key in the query", {"params": {"api_key": "{a_key}"}}),
        ("tenant JWT not allowed", {"headers": {"Authorization": "Bearer {b_token}"}}),
        ("CRLF in key", {"headers": {"X-API-Key": "pk_live_x\tSet-Cookie"}}),
        ("basic auth", {"headers": {"Authorization": "Basic YTpi"}}),
    ]:
        yield Case(
            f"gateway {name}",
            "POST",
            "/models/a-model/predict",
            gateway=True,
            who="anonymous",
            json={"instances": [IRIS_ROW]},
            expect=(401,),
            **kwargs,
        )
    for name, method, path, expect in [
        ("traversal to the API", "GET", "/models/a-model/../../api/admin/system", (404,)),
        ("encoded traversal", "POST", "/models/a-model/%2e%2e/predict", (404,)),
        ("unknown path", "POST", "/nothing/predict", (404,)),
        ("wrong method", "GET", "/models/a-model/predict", (405,)),
        ("another suffix", "POST", "/models/a-model/chat/completions", (404,)),
    ]:
        yield Case(
            f"gateway {name}",
            method,
            path,
            gateway=True,
            who="anonymous",
            headers={"X-API-Key": "{a_key}"},
            expect=expect,
        )
    yield Case(
        "gateway oversized",
        "POST",
        "/models/a-model/predict",
        gateway=True,
        who="anonymous",
        headers={"X-API-Key": "{a_key}", "Content-Type": "application/json"},
        content=b" " * (INFERENCE_LIMIT + 1),
        expect=(413,),
    )
    yield Case(
        "gateway bad json",
        "POST",
        "/models/a-model/predict",
        gateway=True,
        who="anonymous",
        headers={"X-API-Key": "{a_key}", "Content-Type": "application/json"},
        content=b"{not json",
    )
    yield Case(
        "gateway deep json",
        "POST",
        "/models/a-model/predict",
        gateway=True,
        who="anonymous",
        headers={"X-API-Key": "{a_key}", "Content-Type": "application/json"},
        content=b'{"instances": ' + DEEP.encode() + b"}",
    )


CASES = list(cases())


def test_the_table_is_wide() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@dataclass
class World:
    srv: RunningServer
    tokens: dict[str, str]
    keys: dict[str, str]


@pytest.fixture(scope="module")
def world(module_servers, sklearn_dir: Path) -> World:
    srv = module_servers(max_body_bytes=INFERENCE_LIMIT)
    deploy(srv, sklearn_dir, tenant="tenant-a", name="a-model")
    deploy(srv, sklearn_dir, tenant="tenant-b", name="b-model")
    a_key = publish(srv, tenant="tenant-a", name="a-model")["apiKey"]
    srv.platform.tenants.create("tenant-c")
    c_model = {"name": "c-model", "framework": "sklearn", "storageUri": str(sklearn_dir)}
    with srv.tenant("tenant-c") as c:
        assert c.post("/api/models", json=c_model).status_code == 201
        b_key = c.post("/api/models/c-model/publish", json={"config": {}}).json()["publishedModel"]["apiKey"]
    tokens = {
        "tenant-a": srv.tenant_token("tenant-a"),
        "tenant-b": srv.tenant_token("tenant-b"),
        "admin": srv.admin_token(),
    }
    return World(srv, tokens, {"a_key": a_key, "b_key": b_key})


def forged(name: str, srv: RunningServer) -> str:
    secret = srv.settings.jwt_secret or ""
    now = int(time.time())
    base = {"sub": "u", "tenant": "tenant-a", "exp": now + 600, "iat": now}
    if name == "alg none":
        return jwt.encode(base, None, algorithm="none")
    if name == "empty secret":
        # PyJWT will not sign with an empty key; a forger will.
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")

        signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(base).encode())
        return signing + "." + b64(hmac.new(b"", signing.encode(), hashlib.sha256).digest())
    if name == "wrong secret":
        return jwt.encode(base, "another-secret-entirely-0123456789", algorithm="HS256")
    if name == "expired":
        return jwt.encode({**base, "exp": now - 100}, secret, algorithm="HS256")
    if name == "not yet valid":
        return jwt.encode({**base, "nbf": now + 600}, secret, algorithm="HS256")
    if name == "exp as string":
        return jwt.encode({**base, "exp": str(now + 600)}, secret, algorithm="HS256")
    if name == "tenant as list":
        return jwt.encode({**base, "tenant": ["tenant-a"]}, secret, algorithm="HS256")
    if name == "no tenant":
        return jwt.encode({k: v for k, v in base.items() if k != "tenant"}, secret, algorithm="HS256")
    if name == "admin claim from a tenant":
        # Signed right, but names a tenant that is not the admin's: no admin rights, and no such tenant.
        return jwt.encode(
            {**base, "tenant": "ghost", "isAdmin": True, "sub": "admin"}, secret, algorithm="HS256"
        )
    if name == "two dots":
        return "a.b"
    if name == "huge":
        return "eyJ" + "A" * 7000
    return "garbage"


def snapshot(srv: RunningServer) -> Any:
    with srv.platform.store.session() as s:
        return (
            sorted(s.scalars(select(Tenant.name))),
            sorted(
                (
                    m.namespace,
                    m.name,
                    m.framework,
                    m.storage_uri,
                    m.min_replicas,
                    m.max_replicas,
                    m.scale_target,
                    m.scale_metric,
                )
                for m in s.scalars(select(Model))
            ),
            sorted(
                (
                    p.model_id,
                    p.external_path,
                    p.public_hostname,
                    json.dumps(p.rate_limiting, sort_keys=True),
                    json.dumps(p.authentication, sort_keys=True),
                )
                for p in s.scalars(select(Publication))
            ),
            sorted((k.lookup_id, k.expires_at) for k in s.scalars(select(ApiKey))),
            sorted(r.name for r in srv.platform.runtime.replicas()),
        )


_addresses = count(1)


def _fill(value: Any, world: World) -> Any:
    """Put the world's keys and tokens where a case names them: {a_key}, {b_key}, {b_token}."""
    if isinstance(value, str):
        for name, secret in (*world.keys.items(), ("b_token", world.tokens["tenant-b"])):
            value = value.replace("{" + name + "}", secret)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_a_clean_4xx_and_changes_nothing(world: World, case: Case) -> None:
    srv = world.srv
    n = next(_addresses)
    address = f"127.0.{4 + n // 250}.{1 + n % 250}"
    headers = _fill(dict(case.headers), world)
    if case.who.startswith("token:"):
        headers["Authorization"] = f"Bearer {forged(case.who[6:], srv)}"
    elif case.who != "anonymous":
        headers["Authorization"] = f"Bearer {world.tokens[case.who]}"
    before = snapshot(srv)
    base = srv.gateway_url if case.gateway else srv.base_url
    with client_from(base, address) as c:
        r = c.request(
            case.method,
            case.path,
            json=case.json,
            content=case.content,
            headers=headers,
            params=_fill(case.params, world),
        )
    assert r.status_code in case.expect, (case.id, r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], (case.id, body)
    assert "Traceback" not in r.text
    assert snapshot(srv) == before, case.id


def test_invalid_utf8_and_control_bytes_in_the_request_line_and_headers(world: World) -> None:
    """What httpx refuses to send, sent on a raw socket: a clean 4xx or a closed connection, never a 500."""
    port = int(world.srv.base_url.rsplit(":", 1)[1])
    raws = [
        b"GET /api/models/\xff\xfe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + world.tokens["tenant-a"].encode()
        + b"\r\n\r\n",
        b"GET /api/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
        b"GET /api/models HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\x01b\r\n\r\n",
        b"GET /api/admin/audit?since=%ff%fe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + world.tokens["admin"].encode()
        + b"\r\n\r\n",
    ]
    for raw in raws:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            answer = s.recv(65536)
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500, (raw[:60], answer[:200])
