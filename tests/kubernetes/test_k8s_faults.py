"""Faults of the Kubernetes API: 500s, 409s, a watch dropped mid-stream, an expired resourceVersion (410)
and the API server stopped and started. The API answers clear errors (503 while the cluster cannot be
reached), the store loses nothing, and the cache recovers without a restart of inferbox."""

from __future__ import annotations

from typing import Any

from k8s_helpers import ISVC, Kserve, isvc, wait_status
from support import RunningServer, wait_for

from benchmarks.kube_emulator import EmulatorThread

MODEL = {"framework": "sklearn", "storageUri": "s3://m/iris"}


def create(c: Any, name: str) -> Any:
    return c.post("/api/models", json={"name": name, **MODEL})


def informer(k8s: RunningServer) -> Any:
    return k8s.platform.runtime.isvcs  # type: ignore[attr-defined]


def test_a_500_on_create_is_503_and_leaves_no_model(k8s: RunningServer, cluster: EmulatorThread) -> None:
    cluster.call(lambda e: e.fail("POST", r"/inferenceservices$", 500, times=1))
    with k8s.tenant("faulty") as c:
        r = create(c, "first")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "Service unavailable"
        assert "Kubernetes API answered 500" in r.json()["details"]
        assert r.headers["Retry-After"]
        assert c.get("/api/models/first").status_code == 404
        assert create(c, "first").status_code == 201  # the retry goes through
    assert isvc(cluster, "faulty", "first") is not None


def test_a_409_on_create_adopts_the_existing_object(k8s: RunningServer, cluster: EmulatorThread) -> None:
    with k8s.tenant("faulty") as c:
        assert create(c, "warmup").status_code == 201  # the namespace exists
    stale = {
        "metadata": {"name": "adopted", "namespace": "faulty"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "xgboost"}, "storageUri": "s3://old"}}},
    }
    cluster.call(lambda e: e.put(ISVC, stale))
    with k8s.tenant("faulty") as c:
        assert create(c, "adopted").status_code == 201
    obj = isvc(cluster, "faulty", "adopted")
    assert obj is not None
    assert obj["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "sklearn"},
        "storageUri": "s3://m/iris",
    }
    assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "inferbox"


def test_a_409_on_update_is_503_and_keeps_the_old_config(k8s: RunningServer, cluster: EmulatorThread) -> None:
    with k8s.tenant("faulty") as c:
        assert create(c, "kept").status_code == 201
        cluster.call(lambda e: e.fail("PATCH", r"/inferenceservices/kept$", 409, times=1))
        r = c.put("/api/models/kept", json={"maxReplicas": 3})
        assert r.status_code == 503, r.text
        assert c.get("/api/models/kept").json()["maxReplicas"] == 1
        assert c.put("/api/models/kept", json={"maxReplicas": 3}).status_code == 200
    assert isvc(cluster, "faulty", "kept")["spec"]["predictor"]["maxReplicas"] == 3  # type: ignore[index]


def test_a_dropped_watch_resumes_where_it_was(
    k8s: RunningServer, cluster: EmulatorThread, kserve: Kserve
) -> None:
    with k8s.tenant("faulty") as c:
        assert create(c, "resumed").status_code == 201
        relists = informer(k8s).relists
        assert cluster.call(lambda e: e.drop_watches()) >= 1
        kserve.ready("faulty", "resumed", "http://127.0.0.1:9")
        wait_status(c, "resumed", "Ready")
    assert informer(k8s).relists == relists  # resumed from its resourceVersion, no relist


def test_an_expired_version_relists(k8s: RunningServer, cluster: EmulatorThread, kserve: Kserve) -> None:
    with k8s.tenant("faulty") as c:
        assert create(c, "relisted").status_code == 201
        wait_status(c, "relisted", "Pending")
        relists = informer(k8s).relists

        def expire(e: Any) -> None:
            e.compact()
            e.drop_watches()

        cluster.call(expire)
        kserve.loading("faulty", "relisted")
        wait_status(c, "relisted", "Loading")
    wait_for(lambda: informer(k8s).relists > relists)


def test_the_api_server_stopped_and_started(
    k8s: RunningServer, cluster: EmulatorThread, kserve: Kserve
) -> None:
    with k8s.tenant("faulty") as c:
        assert create(c, "survivor").status_code == 201
        cluster.stop()
        try:
            r = create(c, "while-down")
            assert r.status_code == 503, r.text
            assert "cannot be reached" in r.json()["details"]
            # Reads come from the cache and the store: still answered, nothing lost.
            listed = c.get("/api/models")
            assert listed.status_code == 200
            assert "survivor" in [m["name"] for m in listed.json()["models"]]
            # KServe keeps working while inferbox cannot see it.
            kserve.ready("faulty", "survivor", "http://127.0.0.1:9")
        finally:
            cluster.start()
        wait_status(c, "survivor", "Ready", timeout=20)  # the cache caught up, no restart
        assert create(c, "while-down").status_code == 201
        assert c.get("/api/models/while-down").status_code == 200


def test_a_tenant_made_while_the_cluster_is_down_gets_its_namespace_later(
    k8s: RunningServer, cluster: EmulatorThread
) -> None:
    with k8s.admin() as admin:
        cluster.stop()
        try:
            r = admin.post("/api/admin/tenants", json={"name": "late-team"})
            assert r.status_code == 201, r.text  # the store is the truth
        finally:
            cluster.start()
    assert cluster.call(lambda e: e.get("v1/namespaces", None, "late-team")) is None
    with k8s.tenant("late-team") as c:
        wait_for(lambda: create(c, "first").status_code == 201, timeout=20)
    ns = cluster.call(lambda e: e.get("v1/namespaces", None, "late-team"))
    assert ns is not None and ns["metadata"]["labels"]["inferbox.io/tenant"] == "late-team"
