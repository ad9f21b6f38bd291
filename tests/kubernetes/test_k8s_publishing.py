"""Publishing on the Kubernetes runtime: the Gateway API objects of each data-plane mode, validated, named
per tenant and model, removed by unpublish and by deleting the model, and no partial set after a
failure midway. Tenants as namespaces. One emulator per data-plane mode (each control plane reconciles
the whole cluster to its own store)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from k8s_helpers import SYSTEM_NAMESPACE, seed, validate
from support import RunningServer, settings_for, start_server

from benchmarks.kube_emulator import EmulatorThread

ROUTES = "gateway.networking.k8s.io/v1/httproutes"
SECURITY = "gateway.envoyproxy.io/v1alpha1/securitypolicies"
TRAFFIC = "gateway.envoyproxy.io/v1alpha1/backendtrafficpolicies"
GRANTS = "gateway.networking.k8s.io/v1beta1/referencegrants"
ISVC = "serving.kserve.io/v1beta1/inferenceservices"


@pytest.fixture(scope="module", params=["inferbox", "envoy"])
def plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, EmulatorThread, RunningServer]]:
    cluster = EmulatorThread().start()
    seed(cluster)
    tmp = tmp_path_factory.mktemp("k8s-pub")
    server = start_server(
        settings_for(
            tmp,
            runtime="kubernetes",
            kubeconfig=str(cluster.kubeconfig(tmp)),
            k8s_dataplane=request.param,
            k8s_gateway="gateways/public",
        )
    )
    yield request.param, cluster, server
    server.stop()
    cluster.close()


def objects(cluster: EmulatorThread, path: str, model: str | None = None) -> list[dict[str, Any]]:
    found = cluster.call(lambda e: e.all(path))
    if model is None:
        return found
    return [o for o in found if o["metadata"].get("labels", {}).get("inferbox.io/model") == model]


def deploy(srv: RunningServer, tenant: str, name: str) -> None:
    with srv.tenant(tenant) as c:
        r = c.post("/api/models", json={"name": name, "framework": "sklearn", "storageUri": "s3://m/iris"})
        assert r.status_code == 201, r.text


def test_publish_makes_a_valid_set_and_unpublish_removes_it(
    plane: tuple[str, EmulatorThread, RunningServer],
) -> None:
    mode, cluster, srv = plane
    # The same model name in two tenants: their sets never collide.
    for tenant in ("shop-a", "shop-b"):
        deploy(srv, tenant, "iris")
        with srv.tenant(tenant) as c:
            config = {"publicHostname": f"{tenant}.models.example.com", "rateLimiting": {"burstLimit": 5}}
            r = c.post("/api/models/iris/publish", json={"config": config})
            assert r.status_code == 201, r.text
    routes = objects(cluster, ROUTES, "iris")
    assert sorted(r["metadata"]["name"] for r in routes) == ["ibx-shop-a-iris", "ibx-shop-b-iris"]
    for route in routes:
        validate({k: route[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        spec = route["spec"]
        tenant = route["metadata"]["namespace"]
        assert spec["hostnames"] == [f"{tenant}.models.example.com"]
        assert spec["parentRefs"][0]["namespace"] == "gateways" and spec["parentRefs"][0]["name"] == "public"
        owner = route["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "InferenceService" and owner["name"] == "iris"
        backends = [b for rule in spec["rules"] for b in rule["backendRefs"]]
        if mode == "inferbox":
            assert backends == [
                {
                    "group": "",
                    "kind": "Service",
                    "name": "inferbox-gateway",
                    "namespace": "inferbox",
                    "port": 8080,
                }
            ]
            assert spec["rules"][0]["matches"][0]["path"]["type"] == "PathPrefix"
        else:
            assert {b["name"] for b in backends} == {"iris-predictor"}
            rewrites = [f["urlRewrite"]["path"] for rule in spec["rules"] for f in rule["filters"]]
            assert {"type": "ReplaceFullPath", "replaceFullPath": "/v1/models/iris:predict"} in rewrites
    grants = objects(cluster, GRANTS)
    assert {g["metadata"]["namespace"] for g in grants} == {SYSTEM_NAMESPACE}
    for grant in grants:
        validate({k: grant[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    policies = objects(cluster, SECURITY, "iris") + objects(cluster, TRAFFIC, "iris")
    if mode == "inferbox":
        assert policies == []
    else:
        assert len(policies) == 4
        for policy in policies:
            validate({k: policy[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        security = next(p for p in policies if p["kind"] == "SecurityPolicy")
        assert security["spec"]["extAuth"]["http"]["path"] == "/api/validate-api-key"
        traffic = next(p for p in policies if p["kind"] == "BackendTrafficPolicy")
        limits = {
            r["limit"]["unit"]: r["limit"]["requests"]
            for r in traffic["spec"]["rateLimit"]["global"]["rules"]
        }
        assert limits == {"Second": 5, "Minute": 100, "Hour": 5000}

    with srv.tenant("shop-a") as c:
        assert c.delete("/api/models/iris/publish").status_code == 200
    left = [
        o["metadata"]["namespace"] for p in (ROUTES, SECURITY, TRAFFIC) for o in objects(cluster, p, "iris")
    ]
    assert "shop-a" not in left and "shop-b" in left


def test_deleting_the_model_leaves_nothing_of_it(plane: tuple[str, EmulatorThread, RunningServer]) -> None:
    _, cluster, srv = plane
    deploy(srv, "shop-c", "gone")
    with srv.tenant("shop-c") as c:
        assert c.post("/api/models/gone/publish", json={"config": {}}).status_code == 201
        assert objects(cluster, ROUTES, "gone")
        assert c.delete("/api/models/gone").status_code == 200
    for path in (ROUTES, SECURITY, TRAFFIC, ISVC):
        assert objects(cluster, path, "gone") == [], path


def test_a_failure_midway_leaves_no_partial_set(plane: tuple[str, EmulatorThread, RunningServer]) -> None:
    mode, cluster, srv = plane
    deploy(srv, "shop-d", "flaky")
    # The route is the last object of each set: it fails once, so what came before is taken back.
    cluster.call(lambda e: e.fail("POST", r"/namespaces/shop-d/httproutes$", 500, times=1))
    with srv.tenant("shop-d") as c:
        r = c.post("/api/models/flaky/publish", json={"config": {}})
        assert r.status_code == 201, r.text  # stored: the store is the truth, the cluster catches up
    sets = [objects(cluster, p, "flaky") for p in (ROUTES, SECURITY, TRAFFIC)]
    assert all(s == [] for s in sets), sets
    # The next sync (any publishing change, or the periodic resync) makes the whole set.
    with srv.tenant("shop-d") as c:
        assert (
            c.put("/api/models/flaky/publish", json={"config": {"metadata": {"v": "2"}}}).status_code == 200
        )
    assert len(objects(cluster, ROUTES, "flaky")) == 1
    if mode == "envoy":
        assert len(objects(cluster, SECURITY, "flaky")) == 1


def test_tenants_are_namespaces(plane: tuple[str, EmulatorThread, RunningServer]) -> None:
    _, cluster, srv = plane
    with srv.admin() as admin:
        assert admin.post("/api/admin/tenants", json={"name": "fresh-team"}).status_code == 201
        made = cluster.call(lambda e: e.get("v1/namespaces", None, "fresh-team"))
        assert made is not None and made["metadata"]["labels"]["inferbox.io/created"] == "true"
        # A namespace that existed before is labelled, and only unlabelled when the tenant goes.
        cluster.call(
            lambda e: e.put("v1/namespaces", {"metadata": {"name": "legacy", "labels": {"team": "x"}}})
        )
        assert admin.post("/api/admin/tenants", json={"name": "legacy"}).status_code == 201
        legacy = cluster.call(lambda e: e.get("v1/namespaces", None, "legacy"))
        assert legacy["metadata"]["labels"]["inferbox.io/tenant"] == "legacy"
        assert admin.delete("/api/admin/tenants/fresh-team").status_code == 200
        assert admin.delete("/api/admin/tenants/legacy").status_code == 200
    assert cluster.call(lambda e: e.get("v1/namespaces", None, "fresh-team")) is None
    legacy = cluster.call(lambda e: e.get("v1/namespaces", None, "legacy"))
    assert legacy is not None and legacy["metadata"]["labels"] == {"team": "x"}


# extAuth is the envoy data plane's only: the test runs on that plane (not skipped on the other).
@pytest.mark.parametrize("plane", ["envoy"], indirect=True)
def test_envoys_ext_auth_lets_only_the_models_own_key_through(
    plane: tuple[str, EmulatorThread, RunningServer],
) -> None:
    # The route is Envoy's, but every control plane serves it alike, whichever data plane it writes.
    _, _, srv = plane
    keys, paths = {}, {}
    for name in ("left", "right"):
        deploy(srv, "shop-e", name)
        with srv.tenant("shop-e") as c:
            pub = c.post(f"/api/models/{name}/publish", json={"config": {}}).json()["publishedModel"]
        keys[name], paths[name] = pub["apiKey"], pub["externalPath"]
    with srv.client() as anyone:
        # As Envoy asks: the auth path, then the original path, with the original method and headers.
        ok = anyone.post(f"/api/validate-api-key{paths['left']}/predict", headers={"X-API-Key": keys["left"]})
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-inferbox-tenant"] == "shop-e"
        assert ok.headers["x-inferbox-model"] == "left"
        assert ok.headers["x-inferbox-key-id"] and ok.headers["x-inferbox-key-id"] not in ("", keys["left"])
        bearer = {"Authorization": f"Bearer {keys['left']}"}
        assert anyone.get(f"/api/validate-api-key{paths['left']}", headers=bearer).status_code == 200
        other = anyone.post(
            f"/api/validate-api-key{paths['right']}/predict", headers={"X-API-Key": keys["left"]}
        )
        assert other.status_code == 403, other.text
        assert other.json()["error"] == "Forbidden"
        wrong = anyone.post(
            f"/api/validate-api-key{paths['left']}/predict", headers={"X-API-Key": "pk_live_nope"}
        )
        assert wrong.status_code == 401
        assert anyone.post(f"/api/validate-api-key{paths['left']}/predict").status_code == 401


def test_an_update_rewrites_the_route_and_drops_what_it_no_longer_has(
    plane: tuple[str, EmulatorThread, RunningServer],
) -> None:
    _, cluster, srv = plane
    deploy(srv, "shop-f", "moved")
    with srv.tenant("shop-f") as c:
        config = {"publicHostname": "moved.example.com", "externalPath": "/models/old"}
        assert c.post("/api/models/moved/publish", json={"config": config}).status_code == 201
        [route] = objects(cluster, ROUTES, "moved")
        assert route["spec"]["hostnames"] == ["moved.example.com"]
        r = c.put(
            "/api/models/moved/publish",
            json={"config": {"publicHostname": None, "externalPath": "/models/new"}},
        )
        assert r.status_code == 200, r.text
    [route] = objects(cluster, ROUTES, "moved")
    assert "hostnames" not in route["spec"]
    assert {m["path"]["value"] for rule in route["spec"]["rules"] for m in rule["matches"]} <= {
        "/models/new",
        "/models/new/predict",
        "/models/new/infer",
    }
    validate({k: route[k] for k in ("apiVersion", "kind", "metadata", "spec")})
