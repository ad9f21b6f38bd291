"""The models API on the local runtime: real replicas serving real models trained in the tests."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from support import wait_for, wait_ready
from trained import Iris

from inferbox.server.grpc import oip_pb2

ROWS = slice(0, 150, 7)  # a spread of rows from all three classes


def expected_predictions(framework: str, model_dir: Path, X: np.ndarray) -> np.ndarray:
    """The framework's own answer on the same rows, loaded the way its KServe server loads it."""
    if framework == "sklearn":
        import joblib

        return joblib.load(model_dir / "model.joblib").predict(X)
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(model_dir / "model.json")
        return booster.predict(xgboost.DMatrix(X))
    if framework == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(model_dir / "model.txt")).predict(X)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X.astype(np.float32)})[0]


@pytest.mark.parametrize("framework", ["sklearn", "xgboost", "lightgbm", "onnx"])
def test_each_framework_reaches_ready_and_predicts_with_v1_and_v2(
    make_server, request: pytest.FixtureRequest, iris: Iris, framework: str
) -> None:
    model_dir: Path = request.getfixturevalue(f"{framework}_dir")
    srv = make_server()
    X = iris.X[ROWS]
    expected = expected_predictions(framework, model_dir, X)
    with srv.tenant("tenant-a") as c:
        r = c.post(
            "/api/models", json={"name": "iris", "framework": framework, "storageUri": f"file://{model_dir}"}
        )
        assert r.status_code == 201, r.text
        wait_ready(c, "iris")
        v1 = c.post("/api/models/iris/predict", json={"inputData": {"instances": X.tolist()}})
        assert v1.status_code == 200, v1.text
        np.testing.assert_allclose(np.asarray(v1.json()["predictions"]), expected, rtol=1e-6)
        datatype, values = ("FP32", X.astype(np.float32)) if framework == "onnx" else ("FP64", X)
        tensor = {
            "name": "input-0",
            "shape": list(X.shape),
            "datatype": datatype,
            "data": values.flatten().tolist(),
        }
        v2 = c.post("/api/models/iris/predict", json={"inputData": {"inputs": [tensor]}})
        assert v2.status_code == 200, v2.text
        output = v2.json()["outputs"][0]
        got = np.asarray(output["data"]).reshape(output["shape"])
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_model_views_have_the_spec_shape_and_the_url_answers(
    make_server, sklearn_dir: Path, iris: Iris
) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as c:
        body = {
            "name": "my-model",
            "framework": "sklearn",
            "storageUri": str(sklearn_dir),
            "namespace": "tenant-a",  # its own: allowed (another is 403, see test_cross_tenant.py)
        }
        r = c.post("/api/models", json=body)
        assert r.status_code == 201
        assert r.json() == {
            "message": "Model created successfully",
            "name": "my-model",
            "namespace": "tenant-a",
            "config": {
                "framework": "sklearn",
                "storageUri": str(sklearn_dir),
                "minReplicas": 1,
                "maxReplicas": 1,
                "scaleTarget": 10,
                "scaleMetric": "concurrency",
            },
        }
        model = wait_ready(c, "my-model")
        listed = c.get("/api/models").json()["models"]
    assert [m["name"] for m in listed] == ["my-model"]
    assert listed[0]["namespace"] == "tenant-a"
    assert model["ready"] is True
    assert model["predictor"] == {"framework": "sklearn", "storageUri": str(sklearn_dir)}
    assert model["createdAt"].endswith("Z")
    details = model["statusDetails"]
    assert details["ready"] is True and details["phase"] == "Ready"
    assert details["replicas"] == {"desired": 1, "ready": 1, "total": 1, "pending": 0}
    assert details["error"] is None
    ready = next(c for c in details["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert {"type", "status", "reason", "message", "lastTransitionTime"} <= set(ready)
    assert model["url"].endswith("/v1/models/my-model:predict")
    direct = httpx.post(model["url"], json={"instances": iris.X[:3].tolist()})
    assert direct.status_code == 200
    assert direct.json()["predictions"] == [0, 0, 0]
    # The replicas' gRPC Open Inference Protocol port, on the host of the model's url.
    assert isinstance(details["grpcPort"], int)
    with grpc.insecure_channel(f"127.0.0.1:{details['grpcPort']}") as channel:
        live = channel.unary_unary(
            "/inference.GRPCInferenceService/ServerLive",
            request_serializer=oip_pb2.ServerLiveRequest.SerializeToString,
            response_deserializer=oip_pb2.ServerLiveResponse.FromString,
        )
        assert live(oip_pb2.ServerLiveRequest(), timeout=10).live is True


def test_the_models_api_works_on_postgresql(make_server, database_url: str, sklearn_dir: Path) -> None:
    srv = make_server(database_url)
    with srv.admin() as c:
        assert c.post("/api/admin/tenants", json={"name": "tenant-a"}).status_code == 201
        body = {
            "name": "pg-model",
            "framework": "sklearn",
            "storageUri": f"file://{sklearn_dir}",
            "namespace": "tenant-a",
        }
        assert c.post("/api/models", json=body).status_code == 201
        wait_ready(c, "pg-model", namespace="tenant-a")
        r = c.post("/api/models/pg-model/predict", json={"inputData": {"instances": [[6.3, 3.3, 6.0, 2.5]]}})
        assert r.json() == {"predictions": [2]}
        assert c.delete("/api/models/pg-model").status_code == 200
        assert c.get("/api/models").json() == {"models": []}


def _create_failures(sklearn_dir: Path, tmp_path: Path) -> list[tuple[dict[str, Any], str]]:
    ok = {"name": "m", "framework": "sklearn", "storageUri": f"file://{sklearn_dir}"}
    return [
        ({}, "Field 'name' is required"),
        ({**ok, "name": None}, "Field 'name' is required"),
        ({**ok, "name": "My_Model"}, "Field 'name' must be a DNS-1123 label"),
        ({**ok, "name": "m" * 46}, "Field 'name' must be at most 45 characters"),
        ({k: v for k, v in ok.items() if k != "framework"}, "Field 'framework' is required"),
        ({**ok, "framework": "caffe"}, "Field 'framework' must be one of"),
        # A framework whose extra is missing: tests/api/test_missing_extras.py (torch is installed here).
        ({k: v for k, v in ok.items() if k != "storageUri"}, "Field 'storageUri' is required"),
        ({**ok, "storageUri": f"file://{tmp_path}/missing"}, "does not exist"),
        ({**ok, "storageUri": "s3://bucket/model"}, "pip install 'inferbox[storage]'"),
        ({**ok, "storageUri": "relative/path"}, "Field 'storageUri'"),
        ({**ok, "minReplicas": 3, "maxReplicas": 2}, "Field 'minReplicas' must not exceed 'maxReplicas'"),
        ({**ok, "minReplicas": -1}, "Field 'minReplicas'"),
        ({**ok, "minReplicas": 0, "maxReplicas": 0}, "Field 'maxReplicas' must be at least 1"),
        ({**ok, "minReplicas": 500, "maxReplicas": 500}, "Field 'maxReplicas' must be at most 100"),
        ({**ok, "maxReplicas": 101}, "Field 'maxReplicas' must be at most 100 (INFERBOX_MAX_REPLICAS)"),
        ({**ok, "scaleTarget": 0}, "Field 'scaleTarget' must be greater than 0"),
        ({**ok, "scaleTarget": "many"}, "Field 'scaleTarget'"),
        ({**ok, "scaleMetric": "gpu"}, "Field 'scaleMetric' must be one of"),
        ({**ok, "scaleMetric": "cpu"}, "not supported on the local runtime"),
        ({**ok, "scaleMetric": "memory"}, "not supported on the local runtime"),
    ]


def test_create_failures_are_400_and_leave_nothing_behind(
    make_server, sklearn_dir: Path, tmp_path: Path
) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as c:
        for body, fragment in _create_failures(sklearn_dir, tmp_path):
            r = c.post("/api/models", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"] == "Invalid request format", body
            assert fragment in r.json()["details"], (body, r.json())
        assert c.get("/api/models").json() == {"models": []}
    assert srv.platform.runtime.replicas() == []


def test_admin_must_name_an_existing_namespace(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    body = {"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)}
    with srv.admin() as c:
        r = c.post("/api/models", json=body)
        assert r.status_code == 400
        assert "namespace" in r.json()["details"]
        r = c.post("/api/models", json={**body, "namespace": "ghost"})
        assert r.status_code == 400
        assert "ghost" in r.json()["details"]


def test_an_existing_name_is_409(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    body = {"name": "dup", "framework": "sklearn", "storageUri": str(sklearn_dir)}
    with srv.tenant("tenant-a") as a, srv.tenant("tenant-b") as b:
        assert a.post("/api/models", json=body).status_code == 201
        r = a.post("/api/models", json=body)
        assert r.status_code == 409
        assert r.json()["error"] == "Model already exists"
        # The same name in another tenant is another model.
        assert b.post("/api/models", json=body).status_code == 201


def test_another_tenant_s_model_is_404_on_every_route(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as a:
        assert (
            a.post(
                "/api/models", json={"name": "secret", "framework": "sklearn", "storageUri": str(sklearn_dir)}
            ).status_code
            == 201
        )
    with srv.tenant("tenant-b") as b:
        assert b.get("/api/models").json() == {"models": []}
        calls = [
            b.get("/api/models/secret"),
            b.put("/api/models/secret", json={"minReplicas": 2}),
            b.delete("/api/models/secret"),
            b.post("/api/models/secret/predict", json={"inputData": {"instances": [[1, 2, 3, 4]]}}),
            b.get("/api/models/secret/logs"),
        ]
    for r in calls:
        assert r.status_code == 404, r.request.url
        assert r.json()["error"] == "Model not found"
    with srv.tenant("tenant-a") as a:
        assert a.get("/api/models/secret").status_code == 200


def test_predict_failures(make_server, sklearn_dir: Path, tmp_path: Path) -> None:
    srv = make_server()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"this is not a model")
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "good", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        c.post("/api/models", json={"name": "broken", "framework": "sklearn", "storageUri": str(broken)})
        wait_ready(c, "good")
        wrong_width = c.post("/api/models/good/predict", json={"inputData": {"instances": [[1, 2, 3]]}})
        assert wrong_width.status_code == 400
        assert wrong_width.json()["error"] == "Invalid prediction input"
        assert "4" in wrong_width.json()["details"]
        assert (
            c.post("/api/models/good/predict", json={}).json()["details"] == "Field 'inputData' is required"
        )
        shapeless = c.post("/api/models/good/predict", json={"inputData": {"rows": [1]}})
        assert shapeless.status_code == 400
        failed = wait_for(
            lambda: (m := c.get("/api/models/broken").json())["status"] == "FailedToLoad" and m, timeout=30
        )
        assert failed["ready"] is False
        assert failed["statusDetails"]["message"]
        not_ready = c.post("/api/models/broken/predict", json={"inputData": {"instances": [[1, 2, 3, 4]]}})
        assert not_ready.status_code == 503
        assert int(not_ready.headers["retry-after"]) >= 1
        custom = {
            "inputData": {"instances": [[1, 2, 3, 4]]},
            "connectionSettings": {"useCustom": True, "url": "http://127.0.0.1:1/"},
        }
        assert c.post("/api/models/good/predict", json=custom).status_code == 403


def test_custom_connections_are_admin_only_and_refuse_metadata_addresses(
    make_server, sklearn_dir: Path
) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "good", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        url = wait_ready(c, "good")["url"]
    with srv.admin() as admin:
        body = {"inputData": {"instances": [[6.3, 3.3, 6.0, 2.5]]}}
        for hostile in (
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/x",
            "http://metadata.google.internal/",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
        ):
            r = admin.post(
                "/api/models/good/predict",
                params={"namespace": "tenant-a"},
                json={**body, "connectionSettings": {"useCustom": True, "url": hostile}},
            )
            assert r.status_code == 400, hostile
        r = admin.post(
            "/api/models/good/predict", json={**body, "connectionSettings": {"useCustom": True, "url": url}}
        )
        assert r.status_code == 200
        assert r.json() == {"predictions": [2]}


def test_update_merges_and_rolls_without_failed_requests(
    make_server, sklearn_dir: Path, tmp_path: Path
) -> None:
    srv = make_server()
    second = tmp_path / "v2"
    shutil.copytree(sklearn_dir, second)
    failures: list[str] = []
    stop = threading.Event()
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        wait_ready(c, "m")
        r = c.put("/api/models/m", json={"minReplicas": 2, "maxReplicas": 3})
        assert r.status_code == 200, r.text
        assert r.json()["config"]["minReplicas"] == 2
        assert r.json()["config"]["scaleTarget"] == 10  # untouched fields keep their values
        wait_for(lambda: c.get("/api/models/m").json()["statusDetails"]["replicas"]["ready"] == 2, timeout=30)

        def caller() -> None:
            with srv.tenant("tenant-a") as cc:
                while not stop.is_set():
                    resp = cc.post(
                        "/api/models/m/predict", json={"inputData": {"instances": [[6.3, 3.3, 6.0, 2.5]]}}
                    )
                    if resp.status_code != 200:
                        failures.append(resp.text)

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            assert c.put("/api/models/m", json={"storageUri": str(second)}).status_code == 200
            wait_for(
                lambda: (
                    (m := c.get("/api/models/m").json())["predictor"]["storageUri"] == str(second)
                    and m["statusDetails"]["replicas"] == {"desired": 2, "ready": 2, "total": 2, "pending": 0}
                ),
                timeout=60,
            )
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert failures == []
        bad = c.put("/api/models/m", json={"maxReplicas": 1})
        assert bad.status_code == 400
        assert c.put("/api/models/m", json={"scaleMetric": "cpu"}).status_code == 400
        assert c.get("/api/models/m").json()["scaleMetric"] == "concurrency"
        assert c.put("/api/models/m", json={}).status_code == 400
        assert c.put("/api/models/m", json={"name": "other"}).status_code == 400


def test_delete_stops_the_replicas(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        url = wait_ready(c, "m")["url"]
        pids = [r.pid for r in srv.platform.runtime.replicas()]
        assert pids
        assert c.delete("/api/models/m").json() == {"message": "Model deleted successfully"}
        assert c.get("/api/models/m").status_code == 404
        assert c.delete("/api/models/m").status_code == 404
    assert srv.platform.runtime.replicas() == []
    for pid in pids:
        wait_for(
            lambda pid=pid: (
                not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
        )
    with pytest.raises(httpx.TransportError):
        httpx.post(url, json={"instances": [[1, 2, 3, 4]]}, timeout=2)


def test_logs_show_the_replicas_output(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        wait_ready(c, "m")
        r = c.get("/api/models/m/logs", params={"lines": 5})
        assert r.status_code == 200
        lines = r.json()["lines"]
        assert 0 < len(lines) <= 5
        assert r.json()["logs"] == lines  # the original web UI's name for them
        assert c.get("/api/models/m/logs", params={"lines": 0}).status_code == 400


def test_tenant_delete_with_models_is_409_unless_forced(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)})
    with srv.admin() as admin:
        r = admin.delete("/api/admin/tenants/tenant-a")
        assert r.status_code == 409
        assert admin.delete("/api/admin/tenants/tenant-a", params={"force": "true"}).status_code == 200
        assert admin.get("/api/models").json() == {"models": []}
    assert srv.platform.runtime.replicas() == []


def test_a_killed_replica_recovers_and_callers_never_hang(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    answers: list[int] = []
    stop = threading.Event()
    with srv.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "m", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        wait_ready(c, "m")

        def caller() -> None:
            with srv.tenant("tenant-a") as cc:
                while not stop.is_set():
                    r = cc.post(
                        "/api/models/m/predict", json={"inputData": {"instances": [[6.3, 3.3, 6.0, 2.5]]}}
                    )
                    assert r.headers["content-type"].startswith("application/json")
                    answers.append(r.status_code)

        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(answers) > 20)
            (victim,) = srv.platform.runtime.replicas()
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = len(answers)
            wait_for(lambda: c.get("/api/models/m").json()["statusDetails"]["restarts"] >= 1, timeout=30)
            wait_for(lambda: answers[-5:] == [200] * 5 and len(answers) > killed_at + 5, timeout=30)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
    assert set(answers) <= {200, 503}
    assert not any(t.is_alive() for t in threads)


def test_scale_to_zero_and_the_next_request_succeeds(make_server, sklearn_dir: Path) -> None:
    srv = make_server(scale_to_zero_seconds=1.0)
    with srv.tenant("tenant-a") as c:
        body = {
            "name": "m",
            "framework": "sklearn",
            "storageUri": str(sklearn_dir),
            "minReplicas": 0,
            "maxReplicas": 2,
        }
        c.post("/api/models", json=body)
        wait_ready(c, "m")
        zero = wait_for(
            lambda: (m := c.get("/api/models/m").json())["statusDetails"]["replicas"]["total"] == 0 and m,
            timeout=30,
        )
        assert zero["ready"] is True  # as in KServe: scaled to zero is still Ready
        started = time.monotonic()
        r = c.post("/api/models/m/predict", json={"inputData": {"instances": [[6.3, 3.3, 6.0, 2.5]]}})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [2]}
        assert time.monotonic() - started < 30


def test_a_restart_brings_every_model_back(make_server, sklearn_dir: Path, lightgbm_dir: Path) -> None:
    first = make_server()
    with first.tenant("tenant-a") as c:
        c.post("/api/models", json={"name": "a", "framework": "sklearn", "storageUri": str(sklearn_dir)})
        c.post(
            "/api/models",
            json={
                "name": "b",
                "framework": "lightgbm",
                "storageUri": str(lightgbm_dir),
                "minReplicas": 2,
                "maxReplicas": 2,
            },
        )
        url_a = wait_ready(c, "a")["url"]
        wait_ready(c, "b")
    first.stop()
    assert first.platform.runtime.replicas() == []
    second = make_server(
        jwt_secret=first.settings.jwt_secret,
        database_url=first.settings.effective_database_url,
        data_dir=first.settings.data_dir,
    )
    with second.tenant("tenant-a") as c:
        assert wait_ready(c, "a")["url"] == url_a
        b = wait_for(
            lambda: (m := c.get("/api/models/b").json())["statusDetails"]["replicas"]["ready"] == 2 and m,
            timeout=30,
        )
        assert b["status"] == "Ready"
    assert httpx.post(url_a, json={"instances": [[6.3, 3.3, 6.0, 2.5]]}).json() == {"predictions": [2]}


def test_tenants_use_local_paths_only_under_the_model_root(
    make_server, sklearn_dir: Path, tmp_path: Path
) -> None:
    srv = make_server(model_root=sklearn_dir.parent)
    outside = {"name": "m", "framework": "sklearn"}
    with srv.tenant("tenant-a") as c:
        for uri in ("/etc", "file:///etc/passwd", "/no/such/path", f"file://{sklearn_dir.parent}/../etc"):
            r = c.post("/api/models", json={**outside, "storageUri": uri})
            assert r.status_code == 400, uri
            # The same answer whether the path exists or not: no probing of the machine's files.
            assert "local paths must be under" in r.json()["details"], uri
        r = c.post(
            "/api/models", json={**outside, "storageUri": "http://169.254.169.254/latest/model.joblib"}
        )
        assert r.status_code == 400
        assert c.post("/api/models", json={**outside, "storageUri": str(sklearn_dir)}).status_code == 201
        assert c.put("/api/models/m", json={"storageUri": "/etc"}).status_code == 400
    with srv.admin() as admin:
        data_dir = srv.settings.data_dir
        body = {"name": "d", "framework": "sklearn", "storageUri": str(data_dir), "namespace": "tenant-a"}
        r = admin.post("/api/models", json=body)
        assert r.status_code == 400
        assert "data dir" in r.json()["details"]
