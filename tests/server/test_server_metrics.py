"""``/metrics`` (Prometheus text) and ``/inferbox/stats`` (autoscaler counters) of a real replica."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import ServerProcess

pytestmark = pytest.mark.timeout(60)

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture
def server(small_batch_server: ServerProcess) -> ServerProcess:
    return small_batch_server


def stats(server: ServerProcess) -> dict[str, float]:
    response = httpx.get(f"{server.base_url}/inferbox/stats")
    assert response.status_code == 200
    return response.json()


def test_stats_count_inference_requests(server: ServerProcess) -> None:
    before = stats(server)
    assert set(before) == {"inflight", "requests", "busySeconds"}
    assert isinstance(before["inflight"], int) and isinstance(before["requests"], int)
    assert before["inflight"] == 0
    with httpx.Client(base_url=server.base_url) as client:
        for _ in range(5):
            assert client.post("/v1/models/iris:predict", json=ROW).status_code == 200
        infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
        assert client.post("/v2/models/iris/infer", json=infer).status_code == 200
        assert client.post("/v1/models/iris:predict", json={}).status_code == 400  # failures count too
        # Health checks, metadata and scrapes are not inference and do not count.
        client.get("/v2/health/ready")
        client.get("/v2/models/iris")
        client.get("/metrics")
    after = stats(server)
    assert after["requests"] - before["requests"] == 7
    assert after["inflight"] == 0
    assert after["busySeconds"] > before["busySeconds"]
    # With nothing in flight the integral stands still.
    assert stats(server)["busySeconds"] == after["busySeconds"]


def test_metrics_are_prometheus_text(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/v1/models/iris:predict", json=ROW).status_code == 200
        assert client.post("/v1/models/iris:predict", json={"instances": [[1, 2]]}).status_code == 400
        assert client.get("/nowhere").status_code == 404
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}

    requests = families["inferbox_requests"]
    assert requests.type == "counter"
    counts = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in requests.samples
        if s.name.endswith("_total")
    }
    assert counts[("v1_predict", "200")] >= 1
    assert counts[("v1_predict", "400")] >= 1
    assert counts[("not_found", "404")] >= 1

    latency = families["inferbox_request_duration_seconds"]
    assert latency.type == "histogram"
    predict_count = [
        s.value for s in latency.samples if s.name.endswith("_count") and s.labels["endpoint"] == "v1_predict"
    ]
    assert predict_count == [counts[("v1_predict", "200")] + counts[("v1_predict", "400")]]

    for name in ("inferbox_batch_size", "inferbox_batch_requests"):
        assert families[name].type == "histogram"
        count = [s.value for s in families[name].samples if s.name.endswith("_count")]
        assert count and count[0] >= 1  # the 400 never reached the batcher, the 200 did

    inflight = families["inferbox_inflight_requests"]
    assert inflight.type == "gauge"
    assert [s.value for s in inflight.samples] == [0.0]
