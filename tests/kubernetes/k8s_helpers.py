"""Helpers of the Kubernetes runtime's tests: the cluster's seed, a simulated KServe controller
(`Kserve`), and validators for the manifests (the CRD schemas in ../shared/crds, `kubernetes-validate`
for the built-in kinds)."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from support import wait_for

from benchmarks.kube_emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[2]
# The CRD schemas beside the checkout (../shared/crds), or where every machine here keeps them.
CRDS = Path(
    os.environ.get(
        "INFERBOX_CRDS",
        next(
            (p for p in (ROOT.parent / "shared" / "crds", Path("/work/shared/crds")) if p.is_dir()),
            ROOT.parent / "shared" / "crds",
        ),
    )
)
SYSTEM_NAMESPACE = "inferbox"  # where the deploy puts inferbox (its gateway's Service, the grants)
ISVC = "serving.kserve.io/v1beta1/inferenceservices"
IMAGE = "ghcr.io/inferbox/model-server:0.1.0"


def seed(emulator: EmulatorThread) -> None:
    """What a cluster has before inferbox starts: its own namespace and a node."""

    def put(e: Any) -> None:
        e.put("v1/namespaces", {"metadata": {"name": SYSTEM_NAMESPACE}})
        e.put(
            "v1/nodes",
            {
                "metadata": {"name": "node-1"},
                "status": {
                    "capacity": {"cpu": "8", "memory": "32Gi"},
                    "allocatable": {"cpu": "7500m", "memory": "30Gi"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": "b",
                        "containerRuntimeVersion": "containerd://1.7",
                        "kernelVersion": "6.1",
                        "kubeProxyVersion": "v1.32.4",
                        "kubeletVersion": "v1.32.4",
                        "machineID": "m",
                        "operatingSystem": "linux",
                        "osImage": "Linux",
                        "systemUUID": "u",
                    },
                },
            },
        )

    emulator.call(put)


class Kserve:
    """The KServe controller, simulated: writes an InferenceService's status, its predictor
    Deployment and pods, as KServe (raw deployment mode) would."""

    def __init__(self, cluster: EmulatorThread) -> None:
        self.cluster = cluster

    def loading(self, ns: str, name: str) -> None:
        self._status(
            ns,
            name,
            {
                "conditions": [
                    {"type": "PredictorReady", "status": "False", "reason": "Loading", "message": "loading"},
                    {"type": "Ready", "status": "False", "reason": "Loading", "message": "model loading"},
                ],
                "modelStatus": {"states": {"activeModelState": "Loading"}, "transitionStatus": "InProgress"},
            },
        )

    def ready(self, ns: str, name: str, address: str, replicas: int = 1) -> None:
        self._deployment(ns, name, replicas)
        self._status(
            ns,
            name,
            {
                "url": f"http://{name}-{ns}.example.com",
                "address": {"url": address},
                "conditions": [
                    {
                        "type": "PredictorReady",
                        "status": "True",
                        "lastTransitionTime": "2026-12-01T10:00:00Z",
                    },
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:00Z"},
                ],
                "modelStatus": {
                    "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                    "transitionStatus": "UpToDate",
                },
            },
        )

    def failed(self, ns: str, name: str, message: str) -> None:
        self._status(
            ns,
            name,
            {
                "conditions": [{"type": "Ready", "status": "False", "reason": "ModelLoadFailed"}],
                "modelStatus": {
                    "states": {"activeModelState": "FailedToLoad"},
                    "transitionStatus": "BlockedByFailedLoad",
                    "lastFailureInfo": {"reason": "ModelLoadFailed", "message": message},
                },
            },
        )

    def _status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        # A whole new status (None first clears the keys a merge would keep).
        self.cluster.call(
            lambda e: e.put(ISVC, {"metadata": {"name": name, "namespace": ns}, "status": None})
        )
        self.cluster.call(
            lambda e: e.put(ISVC, {"metadata": {"name": name, "namespace": ns}, "status": status})
        )

    def _deployment(self, ns: str, name: str, replicas: int) -> None:
        labels = {"serving.kserve.io/inferenceservice": name, "app": f"{name}-predictor"}

        def put(e: Any) -> None:
            e.put(
                "apps/v1/deployments",
                {
                    "metadata": {"name": f"{name}-predictor", "namespace": ns, "labels": labels},
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": labels},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {"containers": [{"name": "kserve-container", "image": IMAGE}]},
                        },
                    },
                    "status": {"replicas": replicas, "readyReplicas": replicas},
                },
            )
            for i in range(replicas):
                pod = f"{name}-predictor-{i}"
                e.put(
                    "v1/pods",
                    {
                        "metadata": {"name": pod, "namespace": ns, "labels": labels},
                        "spec": {"containers": [{"name": "kserve-container", "image": IMAGE}]},
                        "status": {
                            "phase": "Running",
                            "podIP": f"10.0.0.{i + 10}",
                            "startTime": "2026-12-01T10:00:00Z",
                            "containerStatuses": [
                                {
                                    "name": "kserve-container",
                                    "image": IMAGE,
                                    "imageID": "",
                                    "ready": True,
                                    "restartCount": 0,
                                }
                            ],
                        },
                    },
                )
                e.pod_logs[(ns, pod)] = f"{pod} line 1\n{pod} line 2\n"

        self.cluster.call(put)


def isvc(cluster: EmulatorThread, ns: str, name: str) -> dict[str, Any] | None:
    return cluster.call(lambda e: e.get(ISVC, ns, name))


def wait_status(client: Any, name: str, phase: str, timeout: float = 10) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        body = client.get(f"/api/models/{name}").json()
        return body if body.get("status") == phase else None

    return wait_for(seen, timeout=timeout)


# -- manifest validation ---------------------------------------------------------------------------------
CUSTOM_GROUPS = {"serving.kserve.io", "gateway.networking.k8s.io", "gateway.envoyproxy.io"}
CRD_FILES = {
    "InferenceService": "kserve-inferenceservices.yaml",
    "ClusterServingRuntime": "kserve-clusterservingruntimes.yaml",
    "SecurityPolicy": "envoy-gateway-securitypolicies.yaml",
    "BackendTrafficPolicy": "envoy-gateway-backendtrafficpolicies.yaml",
}


@functools.cache
def _crd_schemas(filename: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, from one CRD file of ../shared/crds. Parsing the YAML
    takes seconds, so the schemas are kept as JSON in the temp dir, keyed by the file's size and time."""
    path = CRDS / filename
    stat = path.stat()
    cached = Path(tempfile.gettempdir()) / f"inferbox-crd-{filename}-{stat.st_size}-{stat.st_mtime_ns}.json"
    if cached.exists():
        return {tuple(k.split(" ", 1)): v for k, v in json.loads(cached.read_text()).items()}  # type: ignore[misc]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as fh:
        for doc in yaml.load_all(fh, Loader=loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api = f"{spec['group']}/{version['name']}"
                out[(api, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({f"{a} {k}": v for (a, k), v in out.items()}))
    partial.replace(cached)
    return out


@functools.cache
def _validator(api: str, kind: str) -> jsonschema.Draft7Validator:
    """One validator per kind (the CRDs are trusted: `jsonschema.validate` would check each huge
    schema against the metaschema on every call)."""
    schema = _crd_schemas(CRD_FILES.get(kind, "gateway-api.yaml")).get((api, kind))
    assert schema is not None, f"no CRD schema for {api} {kind}"
    return jsonschema.Draft7Validator(schema)


def validate(manifest: dict[str, Any]) -> None:
    """Fails the test unless `manifest` validates: custom kinds against their CRD's schema, built-in
    kinds against Kubernetes' own (kubernetes-validate, offline)."""
    api, kind = manifest["apiVersion"], manifest["kind"]
    if api.split("/")[0] in CUSTOM_GROUPS:
        # Never a skip: an unvalidated custom resource must not pass as a validated one.
        assert CRDS.is_dir(), f"the CRD schemas are not at {CRDS} (set INFERBOX_CRDS)"
        _validator(api, kind).validate(manifest)
        return
    import kubernetes_validate

    kubernetes_validate.validate(manifest, "1.32", strict=True)
