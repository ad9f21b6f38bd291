"""The resource kinds the local kubectl knows, and every name kubectl accepts for each.

The kinds with objects on the local runtime (`SERVED_KINDS`) come first; the others (`EMPTY_KINDS`) are
the kinds a cluster running inferbox serves, which answer like an empty cluster here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    plural: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    short: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
    description: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How kubectl names the resource in errors: `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def name_prefix(self) -> str:
        """How `-o name` and mixed tables name an object's kind: `deployment.apps`."""
        return f"{self.singular}.{self.group}" if self.group else self.singular


def _k(plural: str, singular: str, kind: str, gv: str, namespaced: bool, *short: str, **kw: Any) -> Kind:
    group, _, version = gv.rpartition("/")
    return Kind(plural, singular, kind, group, version, namespaced, short, **kw)


PODS = _k(
    "pods",
    "pod",
    "Pod",
    "v1",
    True,
    "po",
    description="Pod is a collection of containers that can run on a host. On the local runtime, one "
    "model-server process of a model (a replica).",
)
DEPLOYMENTS = _k(
    "deployments",
    "deployment",
    "Deployment",
    "apps/v1",
    True,
    "deploy",
    description="Deployment enables declarative updates for Pods and ReplicaSets. On the local runtime, "
    "the replicas of one model's predictor.",
)
NAMESPACES = _k(
    "namespaces",
    "namespace",
    "Namespace",
    "v1",
    False,
    "ns",
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    description="Namespace provides a scope for Names. On inferbox, one tenant.",
)
NODES = _k(
    "nodes",
    "node",
    "Node",
    "v1",
    False,
    "no",
    description="Node is a worker node in Kubernetes. On the local runtime, this machine.",
)
INFERENCE_SERVICES = _k(
    "inferenceservices",
    "inferenceservice",
    "InferenceService",
    "serving.kserve.io/v1beta1",
    True,
    "isvc",
    description="InferenceService is the Schema for the InferenceServices API: one deployed model.",
)
_ENVOY = "gateway.envoyproxy.io/v1alpha1"
# Kinds a cluster serves that the local runtime has no objects of: they answer with nothing.
EMPTY_KINDS = (
    _k("configmaps", "configmap", "ConfigMap", "v1", True, "cm"),
    _k("endpoints", "endpoints", "Endpoints", "v1", True, "ep"),
    _k("events", "event", "Event", "v1", True, "ev"),
    _k("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", "v1", True, "pvc"),
    _k("persistentvolumes", "persistentvolume", "PersistentVolume", "v1", False, "pv"),
    _k("secrets", "secret", "Secret", "v1", True),
    _k("serviceaccounts", "serviceaccount", "ServiceAccount", "v1", True, "sa"),
    _k("services", "service", "Service", "v1", True, "svc"),
    _k("daemonsets", "daemonset", "DaemonSet", "apps/v1", True, "ds"),
    _k("replicasets", "replicaset", "ReplicaSet", "apps/v1", True, "rs"),
    _k("statefulsets", "statefulset", "StatefulSet", "apps/v1", True, "sts"),
    _k("horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", "autoscaling/v2",
       True, "hpa"),
    _k("cronjobs", "cronjob", "CronJob", "batch/v1", True, "cj"),
    _k("jobs", "job", "Job", "batch/v1", True),
    _k("ingresses", "ingress", "Ingress", "networking.k8s.io/v1", True, "ing"),
    _k("gateways", "gateway", "Gateway", "gateway.networking.k8s.io/v1", True, "gtw"),
    _k("httproutes", "httproute", "HTTPRoute", "gateway.networking.k8s.io/v1", True),
    _k("backendtrafficpolicies", "backendtrafficpolicy", "BackendTrafficPolicy", _ENVOY, True, "btp"),
    _k("securitypolicies", "securitypolicy", "SecurityPolicy", _ENVOY, True, "sp"),
    _k("clusterservingruntimes", "clusterservingruntime", "ClusterServingRuntime",
       "serving.kserve.io/v1alpha1", False),
)  # fmt: skip
SERVED_KINDS = (PODS, DEPLOYMENTS, NAMESPACES, NODES, INFERENCE_SERVICES)
ALL_KINDS = SERVED_KINDS + EMPTY_KINDS
# `kubectl get all`: the workload kinds the local runtime has.
ALL_CATEGORY = (PODS, DEPLOYMENTS)


def _aliases() -> dict[str, Kind]:
    """Every spelling kubectl resolves: plural, singular, kind and short names, each also qualified by
    group (`deployments.apps`), by version and group (`deployments.v1.apps`) or, in the core group, by
    version (`pods.v1`)."""
    out: dict[str, Kind] = {}
    for kind in ALL_KINDS:
        names = (kind.plural, kind.singular, kind.kind.lower(), *kind.short)
        for name in names:
            out[name] = kind
            if kind.group:
                out[f"{name}.{kind.group}"] = kind
                out[f"{name}.{kind.version}.{kind.group}"] = kind
            else:
                out[f"{name}.{kind.version}"] = kind
    return out


_ALIASES = _aliases()


def resolve_kind(word: str) -> Kind | None:
    """The kind a resource type names (any case), or None for a type the server does not have."""
    return _ALIASES.get(word.strip().lower())
