"""What the original inference-in-a-box web UI sends and reads, answered as it expects.

Its publish form sends "" for "auto-detect" and "default" and its number fields as digit strings; it
fills the deploy form from `GET /api/frameworks`; its custom connection settings come in parts with a
header list and DNS overrides; it shows `statusDetails.error` and the gateway's address."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support import IRIS_ROW, RunningServer, deploy, wait_for

from inferbox.server.frameworks import FRAMEWORKS, missing_extra


@pytest.fixture(scope="module")
def srv(module_servers, sklearn_dir: Path) -> RunningServer:
    server = module_servers()
    deploy(server, sklearn_dir, name="iris")
    return server


def ui_publish_body(**changes: Any) -> dict[str, Any]:
    """The UI's PublishingForm state as it submits it, untouched by the user."""
    config = {
        "tenantId": "",
        "modelType": "",
        "externalPath": "",
        "publicHostname": "api.router.inference-in-a-box",
        "rateLimiting": {
            "requestsPerMinute": 60,
            "requestsPerHour": 3600,
            "tokensPerHour": 100000,
            "burstLimit": 10,
        },
        "authentication": {"requireApiKey": True, "allowedTenants": []},
        "metadata": {},
    }
    return {"config": {**config, **changes}}


def test_the_ui_publish_body_with_empty_strings(srv: RunningServer) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/iris/publish", json=ui_publish_body())
        assert r.status_code == 201, r.text
        published = r.json()["publishedModel"]
        assert (published["modelType"], published["externalPath"]) == ("traditional", "/models/iris")
        assert published["tenantId"] == "tenant-a"
        assert published["publicHostname"] == "api.router.inference-in-a-box"
        # An edited number field sends its digits as a string; "" leaves a field as it is.
        edited = ui_publish_body(
            rateLimiting={"requestsPerMinute": "120", "requestsPerHour": "", "burstLimit": "20"}
        )
        r = c.put("/api/models/iris/publish", json=edited)
        assert r.status_code == 200, r.text
        limits = r.json()["publishedModel"]["rateLimiting"]
        assert (limits["requestsPerMinute"], limits["requestsPerHour"], limits["burstLimit"]) == (
            120,
            3600,
            20,
        )
        assert r.json()["publishedModel"]["externalPath"] == "/models/iris"
        for bad, fragment in (
            ({"rateLimiting": {"requestsPerMinute": "lots"}}, "config.rateLimiting.requestsPerMinute"),
            ({"rateLimiting": {"requestsPerMinute": "-5"}}, "config.rateLimiting.requestsPerMinute"),
            ({"rateLimiting": {"burstLimit": "9" * 40}}, "config.rateLimiting.burstLimit"),
            ({"modelType": "banana"}, "config.modelType"),
            ({"externalPath": "relative"}, "config.externalPath"),
        ):
            r = c.put("/api/models/iris/publish", json={"config": bad})
            assert r.status_code == 400, (bad, r.text)
            assert fragment in r.json()["details"], (bad, r.json())
        assert c.delete("/api/models/iris/publish").status_code == 200


def test_frameworks_list_what_a_create_would_accept(srv: RunningServer, sklearn_dir: Path) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.get("/api/frameworks")
        assert r.status_code == 200
        listed = {f["name"]: f for f in r.json()["frameworks"]}
        assert list(listed) == list(FRAMEWORKS)
        for name, entry in listed.items():
            assert entry["description"] and isinstance(entry["modelFiles"], list)
            assert entry["available"] is (missing_extra(name) is None)
            assert entry["reason"] == missing_extra(name)
            # The listing and a create naming the framework agree.
            body = {"name": f"fw-{name}", "framework": name, "storageUri": str(sklearn_dir), "minReplicas": 0}
            created = c.post("/api/models", json=body)
            if entry["available"]:
                assert created.status_code == 201, created.text
                assert c.delete(f"/api/models/fw-{name}").status_code == 200
            else:
                assert created.status_code == 400 and entry["reason"] in created.json()["details"]
        assert listed["sklearn"]["available"] is True
        assert listed["pytorch"]["extra"] == "pytorch"
    assert httpx.get(f"{srv.base_url}/api/frameworks").status_code == 401


def _model_port(srv: RunningServer) -> int:
    with srv.tenant("tenant-a") as c:
        port = urlsplit(c.get("/api/models/iris").json()["url"]).port
    assert port is not None
    return port


def _custom(settings: dict[str, Any]) -> dict[str, Any]:
    return {"inputData": {"instances": [IRIS_ROW]}, "connectionSettings": {"useCustom": True, **settings}}


def test_connection_settings_in_the_ui_s_shape(srv: RunningServer) -> None:
    port = _model_port(srv)
    ui = {
        "protocol": "http",
        "host": "127.0.0.1",
        "port": str(port),
        "path": "/v1/models/iris:predict",
        "headers": [{"key": "Content-Type", "value": "application/json"}, {"key": "", "value": ""}],
        "dnsResolve": [],
    }
    with srv.admin() as admin:
        r = admin.post("/api/models/iris/predict", json=_custom(ui))
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [2]}
        # A name only the override knows, as `curl --resolve`.
        named = {
            **ui,
            "host": "model.inferbox.test",
            "dnsResolve": [{"host": "model.inferbox.test", "port": str(port), "address": "127.0.0.1"}],
        }
        r = admin.post("/api/models/iris/predict", json=_custom(named))
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [2]}
        # The other shape still works.
        url = {"url": f"http://127.0.0.1:{port}/v1/models/iris:predict", "headers": {"X-Trace": "1"}}
        assert admin.post("/api/models/iris/predict", json=_custom(url)).json() == {"predictions": [2]}
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/iris/predict", json=_custom(ui))
        assert r.status_code == 403
        assert r.json()["error"] == "Admin access required"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"host": "169.254.169.254", "path": "/latest/meta-data"}, "connectionSettings.url"),
        ({"host": "metadata.google.internal"}, "cloud metadata"),
        (
            {
                "host": "api.inferbox.test",
                "dnsResolve": [{"host": "api.inferbox.test", "address": "169.254.169.254"}],
            },
            "metadata",
        ),
        ({"host": "127.0.0.1", "dnsResolve": [{"host": "x.test", "address": "not-an-ip"}]}, "address"),
        ({"host": "127.0.0.1", "port": "70000"}, "connectionSettings.port"),
        ({"host": "127.0.0.1", "port": "http"}, "connectionSettings.port"),
        ({"host": "127.0.0.1", "port": True}, "connectionSettings.port"),
        ({"host": None, "port": None}, "'connectionSettings.url' (or 'host') is required"),
        ({"host": "evil.test/../x@127.0.0.1"}, "connectionSettings.host"),
        ({"protocol": "gopher", "host": "127.0.0.1"}, "connectionSettings.protocol"),
        ({"host": "127.0.0.1", "headers": [{"key": "Bad Header", "value": "1"}]}, "is not a header name"),
        ({"host": "127.0.0.1", "headers": [{"key": "X-A", "value": "1\r\nX-B: 2"}]}, "breaks a line"),
        ({"host": "127.0.0.1", "headers": {"X-A": "caf\u00e9"}}, "must be ASCII"),
        ({"host": "127.0.0.1", "headers": [{"key": "X-A", "value": "\U0001f600"}]}, "must be ASCII"),
        ({"host": ""}, "'connectionSettings.url' (or 'host') is required"),
        ({"host": "127.0.0.1", "dnsResolve": [{"host": "a", "address": "127.0.0.1"}] * 17}, "dnsResolve"),
    ],
)
def test_hostile_connection_settings_are_400(
    srv: RunningServer, settings: dict[str, Any], fragment: str
) -> None:
    with srv.admin() as admin:
        r = admin.post("/api/models/iris/predict", json=_custom(settings))
    assert r.status_code == 400, (settings, r.text)
    assert fragment in r.json()["details"], (settings, r.json())


def test_a_failed_model_shows_its_error(srv: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    broken = tmp_path_factory.mktemp("broken")
    (broken / "model.joblib").write_bytes(b"this is not a joblib pickle\x00\x01")
    with srv.tenant("tenant-a") as c:
        body = {"name": "broken", "framework": "sklearn", "storageUri": str(broken)}
        assert c.post("/api/models", json=body).status_code == 201

        def failed() -> dict[str, Any] | None:
            model = c.get("/api/models/broken").json()
            return model if model["status"] == "FailedToLoad" else None

        details = wait_for(failed, timeout=60, interval=0.2)["statusDetails"]
        assert isinstance(details["error"], str) and "model.joblib" in details["error"]
        assert details["error"] == details["message"]
        assert c.get("/api/models/iris").json()["statusDetails"]["error"] is None
        assert c.delete("/api/models/broken").status_code == 200


def test_the_gateway_service_answers_where_the_gateway_listens(srv: RunningServer) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/iris/publish", json={"config": {"externalPath": "/gw/iris"}})
        assert r.status_code == 201, r.text
        key = r.json()["publishedModel"]["apiKey"]
    with srv.admin() as admin:
        r = admin.get("/api/admin/ai-gateway-service")
    assert r.status_code == 200
    service = r.json()
    port = service["ports"][0]
    assert port == {
        "name": "http",
        "port": srv.settings.gateway_port,
        "targetPort": srv.settings.gateway_port,
        "protocol": "TCP",
    }
    assert service["externalUrl"] == srv.settings.public_gateway_url
    assert service["externalHostname"] == "localhost"
    # What it says reaches the gateway.
    answer = httpx.post(
        f"http://{service['clusterIP']}:{port['port']}/gw/iris/predict",
        json={"instances": [IRIS_ROW]},
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json() == {"predictions": [2]}
    with srv.tenant("tenant-a") as c:
        assert c.get("/api/admin/ai-gateway-service").status_code == 403
        assert c.delete("/api/models/iris/publish").status_code == 200
    assert httpx.get(f"{srv.base_url}/api/admin/ai-gateway-service").status_code == 401
