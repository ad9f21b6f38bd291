"""deploy/kubernetes renders (`kubectl kustomize`, base and overlays) and every object validates: custom
kinds against the CRD schemas in ../shared/crds, built-in kinds against Kubernetes' own schemas."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import validate

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
TREES = ["", "overlays/postgres-redis", "overlays/envoy"]


def render(tree: str) -> list[dict[str, Any]]:
    # Never a skip: without kubectl none of the manifests would be checked, and the run would look green.
    assert shutil.which("kubectl"), "kubectl is needed on PATH (it renders the kustomization)"
    return _rendered(tree)


@functools.cache
def _rendered(tree: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / tree)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("tree", TREES, ids=[t or "base" for t in TREES])
def test_every_rendered_object_validates(tree: str) -> None:
    docs = render(tree)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterServingRuntime",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "Service",
        "ServiceAccount",
    ]
    for doc in docs:
        validate(doc)


def test_the_role_is_least_privilege() -> None:
    [role] = [d for d in render("") if d["kind"] == "ClusterRole"]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert "secrets" not in resources and "*" not in resources
    assert verbs <= {"get", "list", "watch", "create", "patch", "delete"}
    for rule in role["rules"]:
        if set(rule["resources"]) & {"nodes", "pods", "services", "deployments", "pods/log"}:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_overlays_take_connections_from_a_secret_and_envoy_switches_the_data_plane() -> None:
    for tree in TREES[1:]:
        for dep in (d for d in render(tree) if d["kind"] == "Deployment"):
            [container] = dep["spec"]["template"]["spec"]["containers"]
            assert {"secretRef": {"name": "inferbox-connections"}} in container["envFrom"], dep["metadata"]
    [config] = [d for d in render("overlays/envoy") if d["kind"] == "ConfigMap"]
    assert config["data"]["INFERBOX_K8S_DATAPLANE"] == "envoy"
    runtimes = [d for d in render("") if d["kind"] == "ClusterServingRuntime"]
    assert {r["spec"]["supportedModelFormats"][0]["name"] for r in runtimes} == {
        "sklearn",
        "xgboost",
        "lightgbm",
        "onnx",
        "pytorch",
    }
