"""The full protocols through the gateway: the clients users run, pointed at a published URL.

kserve's `InferenceRESTClient` (V1 and V2) and `tritonclient.http`, with the key in a header, against
`externalUrl`: liveness, readiness, metadata and inference, 401 and 429 as those clients report them,
health and metadata that spend no quota, another model's name, wrong methods, and hostile binary-extension
headers that the gateway refuses before any replica reads them.

One control plane with two published iris models serves the whole module. `tritonclient.grpc` is never
imported here: its protobuf package clashes with kserve's in one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from support import IRIS_ROW, RunningServer, client_from, deploy, publish
from tritonclient.utils import InferenceServerException

T = TypeVar("T")


@dataclass(frozen=True)
class Published:
    model: str
    url: str  # externalUrl on the test's gateway
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    @property
    def hostport_path(self) -> str:
        """The form tritonclient takes: host:port/path, without the scheme."""
        return self.url.removeprefix("http://")


@pytest.fixture(scope="module")
def srv(module_servers: Callable[..., RunningServer], sklearn_dir: Path) -> RunningServer:
    server = module_servers()
    deploy(server, sklearn_dir, name="iris")
    deploy(server, sklearn_dir, name="tight")
    return server


def _published(srv: RunningServer, name: str, config: dict[str, Any]) -> Published:
    published = publish(srv, config, name=name)
    path = published["externalPath"]
    return Published(name, f"{srv.gateway_url}{path}", published["apiKey"])


@pytest.fixture(scope="module")
def pub(srv: RunningServer) -> Published:
    limits = {"requestsPerMinute": 10_000, "requestsPerHour": 100_000, "burstLimit": 1_000}
    return _published(srv, "iris", {"rateLimiting": limits})


@pytest.fixture(scope="module")
def tight(srv: RunningServer) -> Published:
    """Two inference calls a minute: what the quota tests spend. Published under iris's path, so every
    call to it also shows that the longest externalPath wins."""
    config = {
        "externalPath": "/models/iris/tight",
        "rateLimiting": {"requestsPerMinute": 2, "burstLimit": 100},
    }
    return _published(srv, "tight", config)


def run(make: Callable[[InferenceRESTClient], Awaitable[T]], protocol: str, address: str | None = None) -> T:
    """One call through a fresh kserve REST client (its httpx client belongs to one event loop)."""

    async def go() -> T:
        transport = httpx.AsyncHTTPTransport(local_address=address) if address else None
        client = InferenceRESTClient(RESTConfig(protocol=protocol, transport=transport, timeout=30))
        try:
            return await make(client)
        finally:
            await client.close()

    return asyncio.run(go())


def iris_input(binary: bool) -> InferInput:
    tensor = InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([IRIS_ROW], dtype=np.float64), binary_data=binary)
    return tensor


# -- kserve V1 -----------------------------------------------------------------------------------


def test_kserve_v1_liveness_readiness_and_predict(pub: Published) -> None:
    h = pub.headers
    assert run(lambda c: c.is_server_live(pub.url, headers=h), "v1") is True
    assert run(lambda c: c.is_model_ready(pub.url, pub.model, headers=h), "v1") is True
    answer = run(lambda c: c.infer(pub.url, {"instances": [IRIS_ROW]}, pub.model, headers=h), "v1")
    assert answer == {"predictions": [2]}


def test_get_external_path_keeps_its_metadata_and_the_slash_is_v1_liveness(pub: Published) -> None:
    meta = httpx.get(pub.url, headers=pub.headers)
    assert meta.status_code == 200
    assert meta.json()["name"] == "iris"
    assert "inputs" in meta.json()
    live = httpx.get(f"{pub.url}/", headers=pub.headers)
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    listed = httpx.get(f"{pub.url}/v1/models", headers=pub.headers)
    assert (listed.status_code, listed.json()) == (200, {"models": ["iris"]})


# -- kserve V2 -----------------------------------------------------------------------------------


def test_kserve_v2_health_and_json_infer(pub: Published) -> None:
    h = pub.headers
    assert run(lambda c: c.is_server_live(pub.url, headers=h), "v2") is True
    assert run(lambda c: c.is_server_ready(pub.url, headers=h), "v2") is True
    assert run(lambda c: c.is_model_ready(pub.url, pub.model, headers=h), "v2") is True
    request = InferRequest(pub.model, [iris_input(binary=False)])
    response = run(lambda c: c.infer(pub.url, request, pub.model, headers=dict(h)), "v2")
    assert response.model_name == "iris"
    assert response.outputs[0].as_numpy().tolist() == [2]


def test_kserve_v2_binary_infer(pub: Published) -> None:
    request = InferRequest(pub.model, [iris_input(binary=True)])
    response = run(lambda c: c.infer(pub.url, request, pub.model, headers=dict(pub.headers)), "v2")
    assert response.outputs[0].as_numpy().tolist() == [2]


# -- tritonclient.http -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton_client(pub: Published) -> Any:
    client = triton.InferenceServerClient(pub.hostport_path, connection_timeout=30, network_timeout=30)
    yield client
    client.close()


def triton_infer(client: Any, published: Published, binary: bool, **headers: str) -> Any:
    tensor = triton.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([IRIS_ROW], dtype=np.float64), binary_data=binary)
    return client.infer(published.model, [tensor], headers=headers or published.headers)


def test_tritonclient_health_metadata_and_json_infer(triton_client: Any, pub: Published) -> None:
    h = pub.headers
    assert triton_client.is_server_live(headers=h) is True
    assert triton_client.is_server_ready(headers=h) is True
    assert triton_client.is_model_ready("iris", headers=h) is True
    assert triton_client.is_model_ready("iris", model_version="1", headers=h) is True
    server = triton_client.get_server_metadata(headers=h)
    assert server["name"]
    model = triton_client.get_model_metadata("iris", headers=h)
    assert model["name"] == "iris"
    assert model["inputs"] and model["outputs"]
    result = triton_infer(triton_client, pub, binary=False)
    assert result.as_numpy(model["outputs"][0]["name"]).tolist() == [2]
    # The key as a bearer token works the same way.
    bearer = triton_infer(triton_client, pub, binary=False, Authorization=f"Bearer {pub.key}")
    assert bearer.get_response()["model_name"] == "iris"


def test_tritonclient_binary_infer(triton_client: Any, pub: Published) -> None:
    result = triton_infer(triton_client, pub, binary=True)
    name = result.get_response()["outputs"][0]["name"]
    assert result.as_numpy(name).tolist() == [2]


def test_tritonclient_without_a_key_is_refused(triton_client: Any) -> None:
    assert triton_client.is_server_live() is False  # tritonclient's health calls answer a bool
    with pytest.raises(InferenceServerException) as refused:
        triton_client.get_server_metadata()
    assert refused.value.status() == "401"
    assert "Authentication required" in str(refused.value)


# -- refused and limited through the clients -----------------------------------------------------------


def test_kserve_reports_401_for_a_wrong_key(pub: Published) -> None:
    wrong = {"X-API-Key": "pk_live_" + "A" * 43}
    request = InferRequest(pub.model, [iris_input(binary=False)])
    with pytest.raises(httpx.HTTPStatusError) as refused:
        run(lambda c: c.infer(pub.url, request, pub.model, headers=wrong), "v2", "127.0.31.1")
    assert refused.value.response.status_code == 401
    assert refused.value.response.json()["error"] == "Invalid API key"
    with pytest.raises(httpx.HTTPStatusError) as probe:
        run(lambda c: c.is_server_ready(pub.url, headers=wrong), "v2", "127.0.31.2")
    assert probe.value.response.status_code == 401


def test_probes_and_metadata_spend_no_quota_and_inference_meets_429(tight: Published) -> None:
    h = tight.headers
    client = triton.InferenceServerClient(tight.hostport_path, connection_timeout=30, network_timeout=30)
    try:
        # Far more health and metadata calls than the two calls a minute the key may spend.
        for _ in range(3):
            assert client.is_server_live(headers=h) and client.is_server_ready(headers=h)
            assert client.is_model_ready("tight", headers=h)
            assert client.get_model_metadata("tight", headers=h)["name"] == "tight"
            assert httpx.get(tight.url, headers=h).status_code == 200
            assert run(lambda c: c.is_server_live(tight.url, headers=h), "v1") is True
        # So both inference calls go through, and the third meets the limit in either client.
        assert triton_infer(client, tight, binary=False).get_response()["model_name"] == "tight"
        v1 = run(lambda c: c.infer(tight.url, {"instances": [IRIS_ROW]}, "tight", headers=h), "v1")
        assert v1 == {"predictions": [2]}
        with pytest.raises(InferenceServerException) as limited:
            triton_infer(client, tight, binary=False)
        assert limited.value.status() == "429"
        assert "Rate limit exceeded" in str(limited.value)
        request = InferRequest(tight.model, [iris_input(binary=False)])
        with pytest.raises(httpx.HTTPStatusError) as kserve_limited:
            run(lambda c: c.infer(tight.url, request, "tight", headers=dict(h)), "v2")
        assert kserve_limited.value.response.status_code == 429
        assert kserve_limited.value.response.json() == {
            "error": "Rate limit exceeded",
            "details": "requestsPerMinute: 2 requests per minute",
        }
        # With the budget spent, health and metadata still answer.
        assert client.is_model_ready("tight", headers=h)
        assert client.get_server_metadata(headers=h)
    finally:
        client.close()


# -- paths that are not there, and wrong methods ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/other/ready"),
        ("POST", "/v2/models/other/infer"),
        ("POST", "/v1/models/other:predict"),
        ("GET", "/v1/models/other"),
        ("GET", "/v2/models/other/versions/1/ready"),
        ("GET", "/v2/unknown"),
        ("GET", "/v3"),
        ("POST", "/v1/models/iris:explain"),
    ],
)
def test_another_model_or_an_unknown_path_is_404(pub: Published, method: str, rest: str) -> None:
    r = httpx.request(method, f"{pub.url}{rest}", headers=pub.headers, json={"instances": [IRIS_ROW]})
    assert r.status_code == 404
    assert set(r.json()) == {"error", "details"}


def test_without_a_key_a_wrong_name_or_method_is_401_like_any_path(pub: Published) -> None:
    # A 404 or 405 before the key check would tell which model name the published path serves.
    with client_from(pub.url, "127.0.31.4") as anonymous:
        for method, rest in (("GET", "/v2/models/other"), ("GET", "/v2/models/iris/infer"), ("GET", "/v3")):
            r = anonymous.request(method, rest)
            assert r.status_code == 401, (method, rest)
            assert r.json()["error"] == "Authentication required"


def test_a_prefix_matches_only_at_a_segment_boundary(pub: Published) -> None:
    r = httpx.get(f"{pub.url}x/v2/health/live", headers=pub.headers)
    assert r.status_code == 404
    assert r.json()["error"] == "Not found"


def test_the_longest_external_path_wins(pub: Published, tight: Published) -> None:
    assert tight.url == f"{pub.url}/tight"
    assert httpx.get(tight.url, headers=tight.headers).json()["name"] == "tight"
    assert httpx.get(f"{tight.url}/v2/models/tight", headers=tight.headers).json()["name"] == "tight"
    assert httpx.get(pub.url, headers=pub.headers).json()["name"] == "iris"
    # Each route keeps its own key.
    with client_from(tight.url, "127.0.31.3", **pub.headers) as other_key:
        assert other_key.get("").status_code == 401


def test_tritonclient_hears_false_for_another_model(triton_client: Any, pub: Published) -> None:
    assert triton_client.is_model_ready("other", headers=pub.headers) is False
    with pytest.raises(InferenceServerException) as missing:
        triton_client.get_model_metadata("other", headers=pub.headers)
    assert missing.value.status() == "404"


@pytest.mark.parametrize(
    ("method", "rest", "allow"),
    [
        ("GET", "/v2/models/iris/infer", "POST"),
        ("GET", "/v1/models/iris:predict", "POST"),
        ("POST", "/v2/health/live", "GET"),
        ("POST", "/v2/models/iris", "GET"),
        ("DELETE", "/v1/models/iris", "GET"),
        ("PUT", "/infer", "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(pub: Published, method: str, rest: str, allow: str) -> None:
    r = httpx.request(method, f"{pub.url}{rest}", headers=pub.headers)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"] == "Method not allowed"


def test_versioned_paths_reach_the_replica(pub: Published) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}
    ok = httpx.post(f"{pub.url}/v2/models/iris/versions/1/infer", headers=pub.headers, json=body)
    assert ok.status_code == 200
    assert ok.json()["outputs"][0]["data"] == [2]
    # Only version 1 exists: the replica says so, through the gateway.
    other = httpx.get(f"{pub.url}/v2/models/iris/versions/7", headers=pub.headers)
    assert other.status_code == 404
    assert "version 1" in other.json()["error"]


# -- the binary extension's header, checked at the gateway ---------------------------------------------

JSON_PART = (
    b'{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","parameters":{"binary_data_size":32}}]}'
)
BINARY_BODY = JSON_PART + np.array(IRIS_ROW, dtype="<f8").tobytes()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("abc", "must be an integer"),
        ("1.5", "must be an integer"),
        ("0x10", "must be an integer"),
        ("", "must be an integer"),
        ("-1", "must not be negative"),
        (str(len(BINARY_BODY) + 1), "past the body"),
        ("9" * 40, "past the body"),
    ],
)
def test_hostile_binary_headers_are_400_at_the_gateway(pub: Published, value: str, says: str) -> None:
    headers = {
        **pub.headers,
        "Inference-Header-Content-Length": value,
        "Content-Type": "application/octet-stream",
    }
    for rest in ("/infer", "/v2/models/iris/infer"):
        r = httpx.post(f"{pub.url}{rest}", headers=headers, content=BINARY_BODY)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "Invalid inference header"
        assert says in r.json()["details"]


def test_a_binary_request_passes_through_unchanged(pub: Published) -> None:
    headers = {
        **pub.headers,
        "Inference-Header-Content-Length": str(len(JSON_PART)),
        "Content-Type": "application/octet-stream",
    }
    r = httpx.post(f"{pub.url}/v2/models/iris/infer", headers=headers, content=BINARY_BODY)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2]
