"""Admin login, tenant tokens and their refusals (issue: control plane, authentication)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from support import RunningServer


def test_admin_login_returns_the_spec_shape_and_a_verifiable_token(server: RunningServer) -> None:
    with server.client() as c:
        r = c.post("/api/admin/login", json={"username": "admin", "password": "password"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"token", "user"}
    user = body["user"]
    assert user == {
        "tenant": "admin",
        "name": "Administrator",
        "subject": "admin",
        "issuer": "management-service",
        "isAdmin": True,
        "exp": user["exp"],
    }
    claims = jwt.decode(body["token"], server.settings.jwt_secret, algorithms=["HS256"])
    assert claims["exp"] == user["exp"]
    assert 3500 < user["exp"] - time.time() <= 3600
    assert claims["tenant"] == "admin"


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "root", "password": "password"},
        {"username": "admin", "password": "PASSWORD"},
    ],
)
def test_wrong_credentials_are_401(server: RunningServer, credentials: dict[str, str]) -> None:
    with server.client() as c:
        r = c.post("/api/admin/login", json=credentials)
    assert r.status_code == 401
    assert r.json()["error"] == "Invalid credentials"


def test_login_body_is_validated(server: RunningServer) -> None:
    with server.client() as c:
        r = c.post("/api/admin/login", json={"username": "admin"})
        assert r.status_code == 400
        assert r.json() == {"error": "Invalid request format", "details": "Field 'password' is required"}
        r = c.post("/api/admin/login", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert "JSON" in r.json()["details"]


def test_repeated_failures_lock_the_username_out(server: RunningServer) -> None:
    with server.client() as c:
        codes = [
            c.post("/api/admin/login", json={"username": "admin", "password": f"guess{i}"}).status_code
            for i in range(6)
        ]
        assert codes == [401] * 5 + [429]
        # Even the right password waits for the cool-down.
        r = c.post("/api/admin/login", json={"username": "admin", "password": "password"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.json()["error"] == "Too many failed login attempts"


def test_tenant_token_identifies_its_tenant(server: RunningServer) -> None:
    token = server.tenant_token("tenant-a", subject="alice")
    with server.client(token) as c:
        r = c.get("/api/tenant")
    assert r.status_code == 200
    body = r.json()
    assert body["tenant"] == "tenant-a"
    assert body["user"] == "alice"
    assert body["issuer"] == "management-service"
    assert body["expiresAt"].endswith("Z")
    assert body["isAdmin"] is False


def _forge(claims: dict, key: str = "some-other-secret-value-that-is-long-enough", alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _unsigned(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def bad_tokens(secret: str) -> dict[str, str]:
    now = int(time.time())
    good = {"sub": "u", "tenant": "tenant-a", "iat": now, "exp": now + 600}
    return {
        "alg none": _unsigned(good),
        "bad signature": _forge(good),
        "expired": _forge({**good, "exp": now - 120}, secret),
        "not yet valid": _forge({**good, "nbf": now + 600}, secret),
        "no exp": _forge({k: v for k, v in good.items() if k != "exp"}, secret),
        "no tenant claim": _forge({k: v for k, v in good.items() if k != "tenant"}, secret),
        "unknown tenant": _forge({**good, "tenant": "nobody"}, secret),
        "malformed": "not.a.jwt",
        "admin claims from a tenant subject": _forge({**good, "tenant": "admin", "isAdmin": True}, secret),
    }


def test_bad_tokens_are_refused(server: RunningServer) -> None:
    server.platform.tenants.create("tenant-a")
    for label, token in bad_tokens(server.settings.jwt_secret).items():
        with server.client(token) as c:
            r = c.get("/api/tenant")
        assert r.status_code == 401, label
        assert r.json()["error"] == "Authentication required", label
        assert r.json()["details"], label


def test_missing_or_non_bearer_credentials_are_401(server: RunningServer) -> None:
    with server.client() as c:
        assert c.get("/api/tenant").status_code == 401
        r = c.get("/api/tenant", headers={"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="})
    assert r.status_code == 401
    assert "Bearer" in r.json()["details"]


def test_a_tenant_on_an_admin_route_gets_403(server: RunningServer) -> None:
    with server.tenant("tenant-a") as c:
        r = c.get("/api/admin/tenants")
    assert r.status_code == 403
    assert r.json()["error"] == "Admin access required"


def test_issuer_and_audience_are_enforced_when_configured(make_server, tmp_path) -> None:
    srv = make_server(jwt_issuer="https://idp.example", jwt_audience="inferbox")
    srv.platform.tenants.create("tenant-a")
    secret = srv.settings.jwt_secret
    now = int(time.time())
    base = {"sub": "u", "tenant": "tenant-a", "exp": now + 600}
    cases = {
        "right": (_forge({**base, "iss": "https://idp.example", "aud": "inferbox"}, secret), 200),
        "wrong issuer": (_forge({**base, "iss": "https://evil.example", "aud": "inferbox"}, secret), 401),
        "wrong audience": (_forge({**base, "iss": "https://idp.example", "aud": "other"}, secret), 401),
        "no audience": (_forge({**base, "iss": "https://idp.example"}, secret), 401),
    }
    for label, (token, status) in cases.items():
        with srv.client(token) as c:
            assert c.get("/api/tenant").status_code == status, label
    # Tokens inferbox signs itself carry the configured issuer and audience.
    with srv.client(srv.tenant_token("tenant-a")) as c:
        assert c.get("/api/tenant").status_code == 200


class _JwksServer:
    """A local identity provider's JWKS endpoint."""

    def __init__(self, jwks: dict) -> None:
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def identity_provider() -> Iterator[tuple[_JwksServer, dict]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa-1", use="sig", alg="RS256")
    ec_jwk.update(kid="ec-1", use="sig", alg="ES256")
    idp = _JwksServer({"keys": [rsa_jwk, ec_jwk]})
    yield idp, {"rsa": rsa_key, "ec": ec_key}
    idp.close()


def test_jwks_tokens_rs256_and_es256(make_server, identity_provider) -> None:
    idp, keys = identity_provider
    srv = make_server(jwt_jwks_url=idp.url)
    srv.platform.tenants.create("tenant-a")
    now = int(time.time())
    claims = {"sub": "bob", "tenant": "tenant-a", "exp": now + 600}
    rs = jwt.encode(claims, keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims, keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})
    for token in (rs, es):
        with srv.client(token) as c:
            r = c.get("/api/tenant")
        assert r.status_code == 200, r.text
        assert r.json()["user"] == "bob"
    # A key the provider does not publish, an unknown kid, and an IdP token claiming admin are refused.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "rsa-1"})
    unknown_kid = jwt.encode(claims, keys["rsa"], algorithm="RS256", headers={"kid": "nope"})
    for token in (forged, unknown_kid):
        with srv.client(token) as c:
            assert c.get("/api/tenant").status_code == 401
    admin_claims = {"sub": "admin", "tenant": "admin", "isAdmin": True, "exp": now + 600}
    fake_admin = jwt.encode(admin_claims, keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    with srv.client(fake_admin) as c:
        assert c.get("/api/admin/tenants").status_code == 401
