"""Models on the Kubernetes runtime, end to end: the API over HTTP, lightkube over HTTP to the emulated
API server, a simulated KServe writing status, and a real model server at the InferenceService's
address for predict. One emulator and one control plane for the module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import ISVC, Kserve, isvc, validate, wait_status
from server.server_helpers import running_server
from support import IRIS_ROW, RunningServer, wait_for
from websockets.sync.client import connect

from benchmarks.kube_emulator import EmulatorThread

S3 = "s3://models/iris"


def create(c: Any, name: str, **fields: Any) -> Any:
    body = {"name": name, "framework": "sklearn", "storageUri": S3, **fields}
    return c.post("/api/models", json=body)


def without_status(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "status"}


def test_create_makes_a_valid_inference_service_in_the_tenants_namespace(
    k8s: RunningServer, cluster: EmulatorThread
) -> None:
    with k8s.tenant("team-a") as c:
        r = create(c, "iris", minReplicas=2, maxReplicas=4, scaleTarget=5, scaleMetric="rps")
        assert r.status_code == 201, r.text
        again = create(c, "iris")
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "Model already exists"
    obj = isvc(cluster, "team-a", "iris")
    assert obj is not None
    validate(without_status(obj))
    assert obj["spec"]["predictor"] == {
        "minReplicas": 2,
        "maxReplicas": 4,
        "scaleTarget": 5,
        "scaleMetric": "rps",
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": S3},
    }
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "inferbox"
    assert labels["inferbox.io/tenant"] == "team-a"
    ns = cluster.call(lambda e: e.get("v1/namespaces", None, "team-a"))
    assert ns is not None and ns["metadata"]["labels"]["inferbox.io/tenant"] == "team-a"
    validate(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-a", "labels": ns["metadata"]["labels"]},
        }
    )


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"storageUri": "/tmp/models/iris"}, "local path does not exist inside the cluster"),
        ({"storageUri": "file:///tmp/iris"}, "local path does not exist inside the cluster"),
        ({"scaleMetric": "gpu"}, "scaleMetric"),
        ({"minReplicas": -1}, "minReplicas"),
        ({"framework": "caffe"}, "framework"),
        ({"args": {"task": "text-generation"}}, "Field 'args' is only for framework huggingface"),
        ({"framework": "huggingface", "args": {"task": "ocr"}}, "Field 'args.task' must be one of"),
    ],
)
def test_bad_specs_are_400_and_reach_no_cluster(
    k8s: RunningServer, cluster: EmulatorThread, fields: dict[str, Any], fragment: str
) -> None:
    with k8s.tenant("team-a") as c:
        r = create(c, "refused", **fields)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["details"]
    assert isvc(cluster, "team-a", "refused") is None


def test_cpu_and_memory_metrics_are_accepted_here(k8s: RunningServer, cluster: EmulatorThread) -> None:
    with k8s.tenant("team-a") as c:
        assert create(c, "by-cpu", scaleMetric="cpu").status_code == 201
        assert c.delete("/api/models/by-cpu").status_code == 200
    wait_for(lambda: isvc(cluster, "team-a", "by-cpu") is None)


def test_status_from_the_watch_ws_and_predict_at_the_address(
    k8s: RunningServer, cluster: EmulatorThread, kserve: Kserve, sklearn_dir: Path
) -> None:
    token = k8s.tenant_token("team-b")
    ws_url = k8s.base_url.replace("http://", "ws://") + f"/ws?token={token}"
    with k8s.client(token) as c, connect(ws_url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        assert create(c, "iris").status_code == 201
        body = wait_status(c, "iris", "Pending")
        assert body["ready"] is False
        kserve.loading("team-b", "iris")
        wait_status(c, "iris", "Loading")
        with running_server("sklearn", sklearn_dir, name="iris") as model:
            kserve.ready("team-b", "iris", model.base_url, replicas=2)
            body = wait_status(c, "iris", "Ready")
            assert body["ready"] is True
            assert body["url"] == "http://iris-team-b.example.com/v1/models/iris:predict"
            assert body["statusDetails"]["replicas"] == {"desired": 2, "ready": 2, "total": 2, "pending": 0}
            assert {c["type"]: c["status"] for c in body["statusDetails"]["conditions"]} == {
                "PredictorReady": "True",
                "Ready": "True",
            }
            r = c.post("/api/models/iris/predict", json={"inputData": {"instances": [IRIS_ROW]}})
            assert r.status_code == 200, r.text
            assert r.json() == {"predictions": [2]}
        # /ws told the same story, in order.
        phases = []
        while "Ready" not in phases:
            event = json.loads(ws.recv(timeout=10))
            if event.get("type") == "model.statusChanged" and event["name"] == "iris":
                phases.append(event["data"]["phase"])
        assert phases[-1] == "Ready" and "Loading" in phases
        logs = c.get("/api/models/iris/logs").json()
        assert any("iris-predictor-0 line 2" in line for line in json.dumps(logs).split("\\n")), logs


def test_failed_to_load_shows_kserves_failure_info(
    k8s: RunningServer, cluster: EmulatorThread, kserve: Kserve
) -> None:
    with k8s.tenant("team-a") as c:
        assert create(c, "broken").status_code == 201
        kserve.failed("team-a", "broken", "no model file in s3://models/iris")
        body = wait_status(c, "broken", "FailedToLoad")
        assert body["ready"] is False
        assert body["statusDetails"]["reason"] == "ModelLoadFailed"
        assert body["statusDetails"]["message"] == "no model file in s3://models/iris"
        r = c.post("/api/models/broken/predict", json={"inputData": {"instances": [IRIS_ROW]}})
        assert r.status_code == 503, r.text


def test_update_merge_patches_the_spec(k8s: RunningServer, cluster: EmulatorThread) -> None:
    with k8s.tenant("team-a") as c:
        assert create(c, "resized").status_code == 201
        r = c.put("/api/models/resized", json={"maxReplicas": 6, "storageUri": "s3://models/iris-v2"})
        assert r.status_code == 200, r.text
    obj = isvc(cluster, "team-a", "resized")
    assert obj is not None
    assert obj["spec"]["predictor"]["maxReplicas"] == 6
    assert obj["spec"]["predictor"]["model"]["storageUri"] == "s3://models/iris-v2"
    assert obj["metadata"]["annotations"]["inferbox.io/generation"] == "2"
    validate(without_status(obj))


def test_a_huggingface_task_becomes_the_predictors_args_and_an_update_replaces_them(
    k8s: RunningServer, cluster: EmulatorThread
) -> None:
    with k8s.tenant("team-a") as c:
        body = {
            "name": "writer",
            "framework": "huggingface",
            "storageUri": "hf://openai-community/gpt2",
            "args": {"task": "text-generation"},
        }
        r = c.post("/api/models", json=body)
        assert r.status_code == 201, r.text
        obj = isvc(cluster, "team-a", "writer")
        assert obj is not None
        validate(without_status(obj))
        assert obj["spec"]["predictor"]["model"] == {
            "modelFormat": {"name": "huggingface"},
            "storageUri": "hf://openai-community/gpt2",
            "args": ["--task=text_generation"],  # KServe's huggingface server's name for it
        }
        r = c.put("/api/models/writer", json={"args": {"task": "feature-extraction"}})
        assert r.status_code == 200, r.text
        changed = isvc(cluster, "team-a", "writer")
        assert changed is not None
        assert changed["spec"]["predictor"]["model"]["args"] == ["--task=text_embedding"]
        assert changed["metadata"]["annotations"]["inferbox.io/generation"] == "2"
        # No task: the list is emptied (a merge patch that left `args` out would keep the old one).
        assert c.put("/api/models/writer", json={"args": {}}).status_code == 200
        cleared = isvc(cluster, "team-a", "writer")
        assert cleared is not None and cleared["spec"]["predictor"]["model"]["args"] == []
        validate(without_status(cleared))
        assert "args" not in c.get("/api/models/writer").json()
        assert c.delete("/api/models/writer").status_code == 200


def test_deleted_or_drifted_behind_inferboxs_back_is_put_back(
    k8s: RunningServer, cluster: EmulatorThread
) -> None:
    with k8s.tenant("team-a") as c:
        assert create(c, "stubborn").status_code == 201
    first = isvc(cluster, "team-a", "stubborn")
    assert first is not None
    cluster.call(lambda e: e.remove(ISVC, "team-a", "stubborn"))
    again = wait_for(lambda: isvc(cluster, "team-a", "stubborn"))
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    drift = {
        "metadata": {"name": "stubborn", "namespace": "team-a"},
        "spec": {"predictor": {"maxReplicas": 99}},
    }
    cluster.call(lambda e: e.put(ISVC, drift))
    wait_for(lambda: (isvc(cluster, "team-a", "stubborn") or {})["spec"]["predictor"]["maxReplicas"] == 1)


def test_delete_leaves_nothing_of_the_model(k8s: RunningServer, cluster: EmulatorThread) -> None:
    with k8s.tenant("team-a") as c:
        assert create(c, "short-lived").status_code == 201
        assert c.delete("/api/models/short-lived").status_code == 200
        assert c.get("/api/models/short-lived").status_code == 404
    assert isvc(cluster, "team-a", "short-lived") is None


def test_another_tenants_model_is_404(k8s: RunningServer) -> None:
    with k8s.tenant("team-c") as c:
        assert create(c, "private").status_code == 201
    with k8s.tenant("team-d") as other:
        assert other.get("/api/models/private").status_code == 404
        assert other.delete("/api/models/private").status_code == 404
        assert [m["name"] for m in other.get("/api/models").json()["models"]] == []
