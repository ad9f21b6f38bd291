"""Publishing end to end: routes, config validation, keys, the gateway, limits, usage, documentation."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import IRIS_ROW, RunningServer, deploy, publish, wait_for


def call(url: str, key: str | None = None, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(
        f"{url}/predict", json=body or {"instances": [IRIS_ROW]}, headers=headers, timeout=30, **kwargs
    )


@pytest.fixture
def srv(make_server) -> RunningServer:
    return make_server()


def test_the_spec_workflow_end_to_end(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    config = {
        "rateLimiting": {"requestsPerMinute": 100, "requestsPerHour": 5000, "burstLimit": 5},
        "metadata": {"description": "My production model"},
    }
    published = publish(srv, config)
    key, url = published["apiKey"], published["externalUrl"]
    assert key.startswith("pk_live_") and len(key) >= len("pk_live_") + 43
    assert url == f"http://localhost:{srv.settings.gateway_port}/models/my-model"
    assert published["metadata"] == {"description": "My production model"}
    gw = f"{srv.gateway_url}/models/my-model"

    ok = call(gw, key)
    assert ok.status_code == 200
    assert ok.json() == {"predictions": [2]}
    for header in (
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "ratelimit-policy",
        "ratelimit",
    ):
        assert header in ok.headers
    assert ok.headers["x-ratelimit-limit"] == "100"
    assert call(gw).status_code == 401
    assert call(gw).json()["error"] == "Authentication required"

    # A burst over burstLimit (5 per second): ten calls at once, so all land within one second.
    with ThreadPoolExecutor(10) as pool:
        burst = list(pool.map(lambda _: call(gw, key), range(10)))
    assert [r.status_code for r in burst].count(200) <= 5
    refused = next(r for r in burst if r.status_code == 429)
    assert refused.json() == {"error": "Rate limit exceeded", "details": "burstLimit: 5 requests per second"}
    assert int(refused.headers["retry-after"]) >= 1
    assert "ratelimit-policy" in refused.headers

    with srv.tenant("tenant-a") as c:
        rotated = c.post("/api/models/my-model/publish/rotate-key")
        assert rotated.status_code == 200
        assert set(rotated.json()) == {"message", "newApiKey", "updatedAt"}
        new_key = rotated.json()["newApiKey"]
        wait_for(lambda: call(gw, new_key).status_code == 200)
        assert call(gw, key).status_code == 401
        assert call(gw, key).json()["error"] == "Invalid API key"

        r = c.put(
            "/api/models/my-model/publish",
            json={"config": {"rateLimiting": {"requestsPerMinute": 3, "burstLimit": 100}}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["publishedModel"]["rateLimiting"]["requestsPerMinute"] == 3
        assert r.json()["publishedModel"]["apiKey"].endswith("…")
        # The minute window already holds the calls above: the lower limit refuses at once.
        after = call(gw, new_key)
        assert after.status_code == 429
        assert "requestsPerMinute" in after.json()["details"]

        assert c.delete("/api/models/my-model/publish").json() == {
            "message": "Model unpublished successfully"
        }
    assert call(gw, new_key).status_code == 404
    with srv.tenant("tenant-a") as c:
        assert c.get("/api/models/my-model/publish").status_code == 404


def test_the_spec_python_client_works_unchanged(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    import requests

    class InferenceClient:  # verbatim from the spec's SDK examples
        def __init__(self, base_url, token):
            self.base_url = base_url
            self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def publish_model(self, model_name, config):
            url = f"{self.base_url}/models/{model_name}/publish"
            response = requests.post(url, headers=self.headers, json={"config": config})
            return response.json()

        def update_published_model(self, model_name, config):
            url = f"{self.base_url}/models/{model_name}/publish"
            response = requests.put(url, headers=self.headers, json={"config": config})
            return response.json()

        def get_published_models(self):
            url = f"{self.base_url}/published-models"
            response = requests.get(url, headers=self.headers)
            return response.json()

    client = InferenceClient(f"{srv.base_url}/api", srv.tenant_token("tenant-a"))
    result = client.publish_model(
        "my-model",
        {
            "tenantId": "tenant-a",
            "publicHostname": "api.router.inference-in-a-box",
            "rateLimiting": {"requestsPerMinute": 100, "requestsPerHour": 5000},
        },
    )
    assert result["message"] == "Model published successfully"
    published = result["publishedModel"]
    assert published["externalUrl"] == "https://api.router.inference-in-a-box/models/my-model"
    assert published["publicHostname"] == "api.router.inference-in-a-box"
    updated = client.update_published_model(
        "my-model", {"rateLimiting": {"requestsPerMinute": 200, "requestsPerHour": 10000}}
    )
    assert updated["publishedModel"]["rateLimiting"] == {
        "requestsPerMinute": 200,
        "requestsPerHour": 10000,
        "tokensPerHour": 100000,
        "burstLimit": 10,
    }
    listing = client.get_published_models()
    assert listing["total"] == 1
    assert listing["publishedModels"][0]["modelName"] == "my-model"
    # With a public hostname, the route answers on that Host (say, behind DNS or curl --resolve).
    gw = f"{srv.gateway_url}/models/my-model"
    assert call(gw, published["apiKey"]).status_code == 404
    hosted = httpx.post(
        f"{gw}/predict",
        json={"instances": [IRIS_ROW]},
        headers={"X-API-Key": published["apiKey"], "Host": "api.router.inference-in-a-box"},
    )
    assert hosted.status_code == 200
    assert hosted.json() == {"predictions": [2]}
    local = published["documentation"]["localTest"]["curl"]
    assert "Host: api.router.inference-in-a-box" in local


def test_the_documented_curl_runs_as_printed(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    published = publish(srv)
    docs = published["documentation"]
    assert docs["endpointUrl"] == published["externalUrl"]
    assert docs["authHeaders"] == {"X-API-Key": published["apiKey"]}
    first = docs["exampleRequests"][0]
    assert first["method"] == "POST" and first["url"].endswith("/predict")
    assert json.loads(first["body"]) == {"instances": [[1.0, 2.0, 3.0, 4.0]]}  # width from the model
    assert set(docs["sdkExamples"]) == {"python", "javascript", "curl"}
    out = subprocess.run(
        ["bash", "-c", docs["sdkExamples"]["curl"] + " -s -w '\\n%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "200", out
    assert "predictions" in json.loads(body)
    namespace: dict[str, Any] = {}
    exec(docs["sdkExamples"]["python"].replace("print(response.json())", "result = response"), namespace)
    assert namespace["result"].status_code == 200


def _bad_configs(srv: RunningServer) -> list[tuple[dict[str, Any], str]]:
    return [
        ({"modelType": "llm"}, "config.modelType"),
        ({"externalPath": "models/x"}, "must start with '/'"),
        ({"externalPath": "/models/../api"}, "'..'"),
        ({"externalPath": "/models//x"}, "'//'"),
        ({"externalPath": "/api/models"}, "reserved prefix /api"),
        ({"externalPath": "/health"}, "reserved prefix /health"),
        ({"externalPath": "/metrics/x"}, "reserved prefix /metrics"),
        ({"externalPath": "/ws"}, "reserved prefix /ws"),
        ({"externalPath": "/x y"}, "config.externalPath"),
        ({"publicHostname": "https://api.example.com"}, "config.publicHostname"),
        ({"publicHostname": "api.example.com/path"}, "config.publicHostname"),
        ({"publicHostname": "api.example.com:8443"}, "config.publicHostname"),
        ({"publicHostname": "localhost"}, "config.publicHostname"),
        ({"rateLimiting": {"requestsPerMinute": 0}}, "config.rateLimiting.requestsPerMinute"),
        ({"rateLimiting": {"burstLimit": -1}}, "config.rateLimiting.burstLimit"),
        ({"rateLimiting": {"tokensPerHour": "lots"}}, "config.rateLimiting.tokensPerHour"),
        ({"rateLimiting": {"requestsPerHour": 1.5}}, "config.rateLimiting.requestsPerHour"),
        (
            {"rateLimiting": {"requestsPerMinute": 600, "requestsPerHour": 500}},
            "must not exceed requestsPerHour",
        ),
        ({"rateLimiting": 5}, "config.rateLimiting"),
        ({"authentication": {"requireApiKey": "yes"}}, "config.authentication.requireApiKey"),
        ({"authentication": {"allowedTenants": ["Not_A_Tenant"]}}, "config.authentication.allowedTenants"),
        ({"externalPath": "/models/other/predict"}, "must not end with /predict"),
        ({"externalPath": "/v1/chat/completions"}, "must not end with /chat/completions"),
        ({"authentication": {"allowedTenants": "tenant-a"}}, "config.authentication.allowedTenants"),
        ({"metadata": ["a"]}, "config.metadata"),
    ]


def test_bad_configs_are_400_and_leave_nothing_behind(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    with srv.tenant("tenant-a") as c:
        for config, fragment in _bad_configs(srv):
            r = c.post("/api/models/my-model/publish", json={"config": config})
            assert r.status_code == 400, (config, r.text)
            assert fragment in r.json()["details"], (config, r.json())
        assert c.post("/api/models/my-model/publish", json={"config": "x"}).status_code == 400
        assert c.get("/api/models/my-model/publish").status_code == 404
        assert c.get("/api/published-models").json() == {"publishedModels": [], "total": 0}
        assert c.post("/api/models/nope/publish", json={"config": {}}).status_code == 404


def test_publishing_twice_and_path_clashes_are_409(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    deploy(srv, sklearn_dir, name="other")
    publish(srv)
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/my-model/publish", json={"config": {}})
        assert r.status_code == 409
        assert r.json()["error"] == "Model is already published"
        r = c.post("/api/models/other/publish", json={"config": {"externalPath": "/models/my-model"}})
        assert r.status_code == 409
        # The same path on another hostname is another route.
        r = c.post(
            "/api/models/other/publish",
            json={"config": {"externalPath": "/models/my-model", "publicHostname": "b.example.com"}},
        )
        assert r.status_code == 201
        r = c.put("/api/models/other/publish", json={"config": {"publicHostname": None}})
        assert r.status_code == 409
        assert c.get("/api/models/other/publish").json()["publicHostname"] == "b.example.com"


def test_keys_are_shown_once_and_masked_after(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    masked = f"pk_live_{key[8:12]}…"
    with srv.tenant("tenant-a") as c:
        got = c.get("/api/models/my-model/publish").json()
        listed = c.get("/api/published-models").json()["publishedModels"][0]
        put = c.put("/api/models/my-model/publish", json={"config": {"metadata": {"v": 2}}}).json()[
            "publishedModel"
        ]
    for view in (got, listed, put):
        assert view["apiKey"] == masked
        assert key not in json.dumps(view)
    # The documentation never holds the masked key (no gateway accepts it): a placeholder, and a note.
    assert got["documentation"]["authHeaders"] == {"X-API-Key": "<your-api-key>"}
    assert masked not in json.dumps(got["documentation"])
    assert "rotate-key" in got["documentation"]["apiKeyNote"]
    assert "documentation" not in listed


def test_validate_api_key(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    with srv.client() as c:
        assert c.post("/api/validate-api-key", json={"apiKey": key}).json() == {
            "valid": True,
            "tenant": "tenant-a",
            "model": "my-model",
        }
        assert c.post("/api/validate-api-key", headers={"X-API-Key": key}).json()["valid"] is True
        for bad in (key[:-1] + ("A" if key[-1] != "A" else "B"), "pk_live_short", "", "not-a-key"):
            r = c.post("/api/validate-api-key", json={"apiKey": bad})
            assert r.status_code == 401
            assert r.json() == {
                "valid": False,
                "error": "Invalid API key",
                "details": "The key is wrong, revoked, or expired",
            }
        assert c.post("/api/validate-api-key", json={}).status_code == 401


def test_validate_api_key_is_rate_limited_against_guessing(make_server) -> None:
    srv = make_server(rate_limit_burst=5, rate_limit_requests=100)
    with srv.client() as c:
        codes = [
            c.post("/api/validate-api-key", json={"apiKey": f"pk_live_{i:040d}"}).status_code
            for i in range(6)
        ]
    assert codes == [401] * 5 + [429]


def test_rotation_with_a_grace_period_keeps_both_keys(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    old = publish(srv)["apiKey"]
    gw = f"{srv.gateway_url}/models/my-model"
    with srv.tenant("tenant-a") as c:
        assert (
            c.post("/api/models/my-model/publish/rotate-key", params={"gracePeriodSeconds": -1}).status_code
            == 400
        )
        new = c.post("/api/models/my-model/publish/rotate-key", params={"gracePeriodSeconds": 300}).json()[
            "newApiKey"
        ]
        assert call(gw, old).status_code == 200
        assert call(gw, new).status_code == 200
        newest = c.post("/api/models/my-model/publish/rotate-key").json()["newApiKey"]
    assert call(gw, old).status_code == 401
    assert call(gw, new).status_code == 401
    assert call(gw, newest).status_code == 200


def test_another_tenant_s_publication_is_404(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    publish(srv)
    with srv.tenant("tenant-b") as b:
        assert b.get("/api/published-models").json() == {"publishedModels": [], "total": 0}
        for r in (
            b.get("/api/models/my-model/publish"),
            b.put("/api/models/my-model/publish", json={"config": {}}),
            b.delete("/api/models/my-model/publish"),
            b.post("/api/models/my-model/publish/rotate-key"),
            b.post("/api/models/my-model/publish", json={"config": {}}),
        ):
            assert r.status_code == 404, r.request.url
        # Naming tenant-a is refused outright (see test_cross_tenant.py).
        for r in (
            b.post("/api/models/my-model/publish", json={"config": {"tenantId": "tenant-a"}}),
            b.get("/api/models/my-model/publish", params={"namespace": "tenant-a"}),
        ):
            assert r.status_code == 403, r.request.url
    with srv.admin() as admin:
        assert admin.get("/api/published-models").json()["total"] == 1
        assert admin.get("/api/models/my-model/publish", params={"namespace": "tenant-a"}).status_code == 200


def test_admin_publishes_with_tenant_id(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    with srv.admin() as admin:
        r = admin.post("/api/models/my-model/publish", json={"config": {"tenantId": "tenant-a"}})
        assert r.status_code == 201, r.text
        assert r.json()["publishedModel"]["tenantId"] == "tenant-a"


def test_allowed_tenants_call_with_their_platform_jwt(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    srv.tenant_token("tenant-b")
    srv.tenant_token("tenant-c")
    publish(srv, {"authentication": {"requireApiKey": True, "allowedTenants": ["tenant-b"]}})
    gw = f"{srv.gateway_url}/models/my-model/predict"
    body = {"instances": [IRIS_ROW]}
    b = httpx.post(gw, json=body, headers={"Authorization": f"Bearer {srv.tenant_token('tenant-b')}"})
    assert b.status_code == 200
    c = httpx.post(gw, json=body, headers={"Authorization": f"Bearer {srv.tenant_token('tenant-c')}"})
    assert c.status_code == 401
    assert c.json()["error"] == "Invalid API key"


def test_a_public_route_needs_no_key_and_is_limited_per_address(
    srv: RunningServer, sklearn_dir: Path
) -> None:
    deploy(srv, sklearn_dir)
    publish(
        srv,
        {
            "authentication": {"requireApiKey": False},
            "rateLimiting": {"burstLimit": 100, "requestsPerMinute": 3},
        },
    )
    gw = f"{srv.gateway_url}/models/my-model"
    assert [call(gw).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_gateway_paths(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    gw = f"{srv.gateway_url}/models/my-model"
    headers = {"X-API-Key": key}
    meta = httpx.get(gw, headers=headers)
    assert meta.status_code == 200
    assert meta.json()["name"] == "my-model"
    v2 = httpx.post(
        f"{gw}/infer",
        headers=headers,
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]},
    )
    assert v2.status_code == 200
    assert v2.json()["outputs"][0]["data"] == [2]
    bearer = httpx.post(
        f"{gw}/predict", headers={"Authorization": f"Bearer {key}"}, json={"instances": [IRIS_ROW]}
    )
    assert bearer.status_code == 200
    assert (
        httpx.post(f"{srv.gateway_url}/models/unknown/predict", headers=headers, json={}).status_code == 404
    )
    assert httpx.get(f"{gw}/predict", headers=headers).status_code == 405
    assert httpx.post(f"{gw}/chat/completions", headers=headers, json={}).status_code == 404
    bad_input = httpx.post(f"{gw}/predict", headers=headers, json={"instances": [[1, 2]]})
    assert bad_input.status_code == 400
    assert "error" in bad_input.json()


def test_usage_is_exact_after_concurrent_calls_and_a_restart(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    deploy(srv, sklearn_dir)
    key = publish(
        srv, {"rateLimiting": {"burstLimit": 1000, "requestsPerMinute": 1000, "requestsPerHour": 5000}}
    )["apiKey"]
    gw = f"{srv.gateway_url}/models/my-model"
    codes: list[int] = []

    def caller() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(15):
                codes.append(
                    client.post(
                        f"{gw}/predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": key}
                    ).status_code
                )

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(200) == 120
    call(gw)  # refused: counted in metrics, not in usage
    with srv.tenant("tenant-a") as c:
        usage = c.get("/api/models/my-model/publish").json()["usage"]
    assert usage["totalRequests"] == 120
    assert usage["requestsToday"] == 120
    assert usage["lastAccessTime"].endswith("Z")
    metrics = httpx.get(f"{srv.gateway_url}/metrics").text
    assert 'outcome="unauthorized"' in metrics
    srv.stop()
    again = make_server(
        jwt_secret=srv.settings.jwt_secret,
        database_url=srv.settings.effective_database_url,
        data_dir=srv.settings.data_dir,
    )
    with again.tenant("tenant-a") as c:
        assert c.get("/api/models/my-model/publish").json()["usage"]["totalRequests"] == 120
        listed = c.get("/api/published-models").json()["publishedModels"][0]
        assert listed["usage"]["totalRequests"] == 120


def test_deleting_the_model_unpublishes_it(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    gw = f"{srv.gateway_url}/models/my-model"
    assert call(gw, key).status_code == 200
    with srv.tenant("tenant-a") as c:
        assert c.delete("/api/models/my-model").status_code == 200
        assert c.get("/api/published-models").json()["total"] == 0
        assert c.post("/api/validate-api-key", json={"apiKey": key}).status_code == 401
    assert call(gw, key).status_code == 404


def test_a_hostname_route_cannot_shadow_the_gateway_s_own_host(make_server, sklearn_dir: Path) -> None:
    srv = make_server(gateway_url="https://models.example.com")
    deploy(srv, sklearn_dir)
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/my-model/publish", json={"config": {"publicHostname": "models.example.com"}})
        assert r.status_code == 400
        assert "gateway's own host" in r.json()["details"]
        # Naming a tenant that does not exist says nothing about which tenants do.
        r = c.post(
            "/api/models/my-model/publish", json={"config": {"authentication": {"allowedTenants": ["ghost"]}}}
        )
        assert r.status_code == 201
        assert r.json()["publishedModel"]["externalUrl"] == "https://models.example.com/models/my-model"
