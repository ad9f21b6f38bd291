"""Answers to the admin's kubectl commands from the local runtime, in kubectl's own formats.

The local runtime has no Kubernetes API, so this module plays one from a snapshot of the platform:
tenants are namespaces, each model is an InferenceService with a `{model}-predictor` Deployment, each
replica process is a pod (`{model}-predictor-<suffix>`), and this machine is the node. Tables follow
kubectl's printers (column names, `tabwriter` spacing, AGE as kubectl rounds it); `-o json|yaml|name`
print the objects as the API server would; errors read as kubectl prints them (`error: the server
doesn't have a resource type "foo"`), with exit code 1.

Commands arrive already validated by `inferbox.kubectl.guard`; this module only answers them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform as host_platform
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from inferbox import __version__
from inferbox.control.tenants import TenantView
from inferbox.kubectl.guard import KubectlCommand
from inferbox.runtime.base import READY, ModelStatus, NodeInfo, ReplicaInfo
from inferbox.runtime.local.node import meminfo
from inferbox.store.tables import Model
from inferbox.timefmt import iso

if TYPE_CHECKING:
    from inferbox.assembly import Platform

CONTAINER = "kserve-container"
IMAGE = f"local/inferbox-model-server:{__version__}"
MAX_LOG_LINES = 1000
DEFAULT_NAMESPACE = "default"  # kubectl's, when no -n is given

# --------------------------------------------------------------------------------------------------
# The cluster, as one snapshot per command


@dataclass(frozen=True)
class ModelState:
    """A model as the store wants it and the runtime sees it."""

    namespace: str
    name: str
    framework: str
    storage_uri: str
    min_replicas: int
    max_replicas: int
    scale_target: int
    scale_metric: str
    generation: int
    created: datetime
    status: ModelStatus | None

    @property
    def deployment(self) -> str:
        return f"{self.name}-predictor"

    @property
    def desired(self) -> int:
        return self.status.desired if self.status else self.min_replicas

    @property
    def ready_replicas(self) -> int:
        return self.status.ready_replicas if self.status else 0

    @property
    def total(self) -> int:
        return self.status.total if self.status else 0


@dataclass(frozen=True)
class Cluster:
    now: datetime
    nodes: list[NodeInfo]
    namespaces: list[TenantView]
    models: list[ModelState]
    replicas: list[ReplicaInfo]


class ReplicaLogs(Protocol):
    """The part of the local runtime that reads one replica's output."""

    async def logs(self, namespace: str, name: str, lines: int, replica: str | None = None) -> list[str]: ...


def _model_rows(platform: Platform) -> list[tuple[Any, ...]]:
    with platform.store.session() as session:
        rows = session.scalars(select(Model).order_by(Model.namespace, Model.name))
        return [
            (
                r.namespace,
                r.name,
                r.framework,
                r.storage_uri,
                r.min_replicas,
                r.max_replicas,
                r.scale_target,
                r.scale_metric,
                r.generation,
                r.created_at,
            )
            for r in rows
        ]


async def snapshot(platform: Platform) -> Cluster:
    """What the platform holds now. Store reads run in the thread pool; the runtime is read on the
    event loop, which owns it."""
    rows = await run_in_threadpool(_model_rows, platform)
    tenants = await run_in_threadpool(platform.tenants.list)
    runtime = platform.runtime
    models = [ModelState(*row, status=runtime.status(row[0], row[1])) for row in rows]
    return Cluster(
        now=datetime.now(UTC),
        nodes=runtime.nodes(),
        namespaces=tenants,
        models=models,
        replicas=runtime.replicas(),
    )


# --------------------------------------------------------------------------------------------------
# kubectl's formats


def human_duration(seconds: float) -> str:
    """kubectl's AGE: `duration.HumanDuration` (k8s.io/apimachinery), rounding as it does."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def table(headers: list[str] | None, rows: list[list[str]], indent: str = "") -> str:
    """Columns as kubectl's tabwriter lays them out: each but the last padded to its widest cell plus
    three spaces, at least six wide (kubectl's minwidth 6, padding 3)."""
    lines = ([headers] if headers else []) + rows
    if not lines:
        return ""
    columns = max(len(line) for line in lines)
    widths = [
        max(6, max(len(line[i]) if i < len(line) else 0 for line in lines) + 3) for i in range(columns - 1)
    ]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) if i < columns - 1 else cell for i, cell in enumerate(line)]
        out.append(indent + "".join(cells).rstrip())
    return "\n".join(out)


def _age(since: datetime | None, now: datetime) -> str:
    return "<unknown>" if since is None else human_duration((now - since).total_seconds())


def _rfc1123(value: datetime | None) -> str:
    return "<unknown>" if value is None else value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _labels_text(labels: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(labels.items())] or ["<none>"]


Block = list[tuple[str, Any]]


def describe_block(block: Block, indent: int = 0, min_width: int = 0) -> list[str]:
    """`kubectl describe`'s key/value layout: keys aligned per block; a list value continues on the
    next lines under the first; a nested block is indented two spaces; a str beginning with a newline
    is a preformatted body (a table) printed under the key."""
    inline = [k for k, v in block if not isinstance(v, list | tuple) or _is_lines(v)]
    width = max([len(k) + 2 for k in inline] + [min_width])
    pad = " " * indent
    out: list[str] = []
    for key, value in block:
        label = f"{key}:"
        if isinstance(value, str) and value.startswith("\n"):
            out.append(pad + label)
            out.extend(pad + "  " + line for line in value[1:].splitlines())
        elif isinstance(value, list | tuple) and not _is_lines(value):
            out.append(pad + label)
            out.extend(describe_block(list(value), indent + 2))
        elif isinstance(value, list | tuple):
            lines = list(value) or ["<none>"]
            out.append(pad + label.ljust(width) + lines[0])
            out.extend(pad + " " * width + line for line in lines[1:])
        else:
            out.append(pad + label.ljust(width) + str(value))
    return out


def _is_lines(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _dump(obj: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(obj, indent=4, sort_keys=True)
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).rstrip("\n")


# --------------------------------------------------------------------------------------------------
# Resource kinds


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
    return _ALIASES.get(word.strip().lower())


# --------------------------------------------------------------------------------------------------
# Objects


@dataclass
class Item:
    """One object, in every form kubectl may print it."""

    kind: Kind
    name: str
    namespace: str | None
    labels: dict[str, str]
    cells: list[str]
    wide: list[str]
    manifest: dict[str, Any]
    describe: Block = field(default_factory=list)


HEADERS: dict[str, tuple[list[str], list[str]]] = {
    "pods": (["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]),
    "deployments": (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"]),
    "namespaces": (["STATUS", "AGE"], []),
    "nodes": (
        ["STATUS", "ROLES", "AGE", "VERSION"],
        ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"],
    ),
    "inferenceservices": (
        ["URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"],
        [],
    ),
}


def _metadata(name: str, namespace: str | None, labels: dict[str, str], created: datetime | None) -> dict:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": iso(created)}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _node_name(cluster: Cluster) -> str:
    return cluster.nodes[0].name if cluster.nodes else "localhost"


def _split_address(address: str | None) -> tuple[str | None, int | None]:
    if not address:
        return None, None
    host, _, port = address.rpartition(":")
    return host.strip("[]") or None, int(port) if port.isdigit() else None


# Pod phase and the container's state for each replica phase the local runtime reports.
_POD_STATES: dict[str, tuple[str, str, str | None]] = {
    # replica phase: (pod phase, container state, waiting/terminated reason)
    "Running": ("Running", "running", None),
    "Pending": ("Pending", "waiting", "Pending"),
    "ContainerCreating": ("Pending", "waiting", "ContainerCreating"),
    "CrashLoopBackOff": ("Running", "waiting", "CrashLoopBackOff"),
    "Terminating": ("Running", "running", None),
    "Error": ("Failed", "terminated", "Error"),
}


def _pod(replica: ReplicaInfo, cluster: Cluster) -> Item:
    node = _node_name(cluster)
    ip, port = _split_address(replica.address)
    phase, state, reason = _POD_STATES.get(replica.phase, ("Unknown", "waiting", replica.phase))
    started = iso(replica.started_at)
    container_state: dict[str, Any] = {state: {"startedAt": started} if state == "running" else {}}
    if reason:
        container_state[state]["reason"] = reason
    ready = "True" if replica.ready else "False"
    conditions = [
        {"type": t, "status": s}
        for t, s in (
            ("Initialized", "True"),
            ("Ready", ready),
            ("ContainersReady", ready),
            ("PodScheduled", "True"),
        )
    ]
    container: dict[str, Any] = {"name": CONTAINER, "image": IMAGE}
    if port:
        container["ports"] = [{"containerPort": port, "protocol": "TCP"}]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "startTime": started,
        "containerStatuses": [
            {
                "name": CONTAINER,
                "image": IMAGE,
                "ready": replica.ready,
                "restartCount": replica.restarts,
                "started": replica.phase == "Running",
                "state": container_state,
                **({"containerID": f"local://{replica.pid}"} if replica.pid else {}),
            }
        ],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    metadata = _metadata(replica.name, replica.namespace, replica.labels, replica.started_at)
    metadata["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{replica.model}-predictor"}
    ]
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [container], "nodeName": node, "restartPolicy": "Always"},
        "status": status,
    }
    state_block: Block = [("Started", _rfc1123(replica.started_at))] if state == "running" else []
    if reason:
        state_block = [("Reason", reason)]
    container_block: Block = [
        ("Container ID", f"local://{replica.pid}" if replica.pid else "<none>"),
        ("Image", IMAGE),
        ("Port", f"{port}/TCP" if port else "<none>"),
        ("Host Port", f"{port}/TCP" if port else "<none>"),
        ("State", state.capitalize()),
        *[(f"  {k}", v) for k, v in state_block],
        ("Ready", ready),
        ("Restart Count", str(replica.restarts)),
    ]
    describe: Block = [
        ("Name", replica.name),
        ("Namespace", replica.namespace),
        ("Priority", "0"),
        ("Service Account", "default"),
        ("Node", f"{node}/127.0.0.1"),
        ("Start Time", _rfc1123(replica.started_at)),
        ("Labels", _labels_text(replica.labels)),
        ("Annotations", ["<none>"]),
        ("Status", "Terminating" if replica.phase == "Terminating" else phase),
        ("IP", ip or ""),
        ("Controlled By", f"Deployment/{replica.model}-predictor"),
        ("Containers", [(CONTAINER, container_block)]),
        ("Conditions", "\n" + table(["Type", "Status"], [[c["type"], c["status"]] for c in conditions])),
        ("QoS Class", "BestEffort"),
        ("Node-Selectors", "<none>"),
        ("Tolerations", "<none>"),
        ("Events", "<none>"),
    ]
    restarts = str(replica.restarts)
    return Item(
        kind=PODS,
        name=replica.name,
        namespace=replica.namespace,
        labels=dict(replica.labels),
        cells=[
            "1/1" if replica.ready else "0/1",
            replica.phase,
            restarts,
            _age(replica.started_at, cluster.now),
        ],
        wide=[ip or "<none>", node, "<none>", "<none>"],
        manifest=manifest,
        describe=describe,
    )


def _model_labels(model: ModelState) -> dict[str, str]:
    return {"serving.kserve.io/inferenceservice": model.name, "app": model.deployment}


def _deployment(model: ModelState, cluster: Cluster) -> Item:
    labels = _model_labels(model)
    desired, ready, total = model.desired, model.ready_replicas, model.total
    available = "True" if ready >= min(desired, 1) else "False"
    spec = {
        "replicas": desired,
        "selector": {"matchLabels": {"app": model.deployment}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": CONTAINER, "image": IMAGE}]},
        },
    }
    status = {
        "replicas": total,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": total,
        "unavailableReplicas": max(total - ready, 0),
        "observedGeneration": model.generation,
        "conditions": [{"type": "Available", "status": available}],
    }
    metadata = _metadata(model.deployment, model.namespace, labels, model.created)
    metadata["generation"] = model.generation
    describe: Block = [
        ("Name", model.deployment),
        ("Namespace", model.namespace),
        ("CreationTimestamp", _rfc1123(model.created)),
        ("Labels", _labels_text(labels)),
        ("Annotations", ["<none>"]),
        ("Selector", f"app={model.deployment}"),
        (
            "Replicas",
            f"{desired} desired | {total} updated | {total} total | {ready} available | "
            f"{max(total - ready, 0)} unavailable",
        ),
        ("StrategyType", "RollingUpdate"),
        (
            "Pod Template",
            [
                ("Labels", _labels_text(labels)),
                (
                    "Containers",
                    [(CONTAINER, [("Image", IMAGE), ("Args", [f"--model_name={model.name}"])])],
                ),
            ],
        ),
        ("Conditions", "\n" + table(["Type", "Status"], [["Available", available]])),
        ("Events", "<none>"),
    ]
    return Item(
        kind=DEPLOYMENTS,
        name=model.deployment,
        namespace=model.namespace,
        labels=labels,
        cells=[f"{ready}/{desired}", str(total), str(ready), _age(model.created, cluster.now)],
        wide=[CONTAINER, IMAGE, f"app={model.deployment}"],
        manifest={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        },
        describe=describe,
    )


def _inference_service(model: ModelState, cluster: Cluster) -> Item:
    status = model.status
    ready = "Unknown" if status is None else ("True" if status.ready else "False")
    url = (status.url if status else None) or ""
    predictor = {
        "minReplicas": model.min_replicas,
        "maxReplicas": model.max_replicas,
        "scaleTarget": model.scale_target,
        "scaleMetric": model.scale_metric,
        "model": {"modelFormat": {"name": model.framework}, "storageUri": model.storage_uri},
    }
    conditions = [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": iso(c.last_transition_time),
        }
        for c in (status.conditions if status else ())
    ]
    isvc_status: dict[str, Any] = {
        "conditions": conditions,
        "modelStatus": {
            "states": {"activeModelState": status.phase if status else "Unknown"},
            "transitionStatus": "UpToDate" if status and status.phase == READY else "InProgress",
        },
    }
    if url:
        isvc_status["url"] = url
    labels: dict[str, str] = {}
    describe: Block = [
        ("Name", model.name),
        ("Namespace", model.namespace),
        ("Labels", ["<none>"]),
        ("Annotations", ["<none>"]),
        ("API Version", INFERENCE_SERVICES.api_version),
        ("Kind", "InferenceService"),
        (
            "Metadata",
            [
                ("Creation Timestamp", iso(model.created) or "<unknown>"),
                ("Generation", str(model.generation)),
            ],
        ),
        (
            "Spec",
            [
                (
                    "Predictor",
                    [
                        ("Max Replicas", str(model.max_replicas)),
                        ("Min Replicas", str(model.min_replicas)),
                        (
                            "Model",
                            [
                                ("Model Format", [("Name", model.framework)]),
                                ("Storage Uri", model.storage_uri),
                            ],
                        ),
                        ("Scale Metric", model.scale_metric),
                        ("Scale Target", str(model.scale_target)),
                    ],
                )
            ],
        ),
        (
            "Status",
            [
                (
                    "Conditions",
                    "\n"
                    + table(
                        ["Type", "Status", "Reason"],
                        [[c["type"], c["status"], c["reason"]] for c in conditions],
                    )
                    if conditions
                    else ["<none>"],
                ),
                ("Model Status", [("Active Model State", status.phase if status else "Unknown")]),
                ("URL", url or "<none>"),
            ],
        ),
        ("Events", "<none>"),
    ]
    return Item(
        kind=INFERENCE_SERVICES,
        name=model.name,
        namespace=model.namespace,
        labels=labels,
        cells=[url, ready, "", "", "", "", _age(model.created, cluster.now)],
        wide=[],
        manifest={
            "apiVersion": INFERENCE_SERVICES.api_version,
            "kind": "InferenceService",
            "metadata": {
                **_metadata(model.name, model.namespace, labels, model.created),
                "generation": model.generation,
            },
            "spec": {"predictor": predictor},
            "status": isvc_status,
        },
        describe=describe,
    )


def _namespace(tenant: TenantView, cluster: Cluster) -> Item:
    labels = {"kubernetes.io/metadata.name": tenant.name}
    return Item(
        kind=NAMESPACES,
        name=tenant.name,
        namespace=None,
        labels=labels,
        cells=[tenant.status, _age(tenant.created, cluster.now)],
        wide=[],
        manifest={
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": _metadata(tenant.name, None, labels, tenant.created),
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": tenant.status},
        },
        describe=[
            ("Name", tenant.name),
            ("Labels", _labels_text(labels)),
            ("Annotations", ["<none>"]),
            ("Status", tenant.status),
            ("Resource Quota", "<none>"),
            ("LimitRange", "<none>"),
        ],
    )


def _os_image() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return host_platform.system() or "<unknown>"


def _arch() -> str:
    machine = host_platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine or "unknown")


def _version(value: str) -> str:
    return value if value.startswith("v") else f"v{value}"


def _node(node: NodeInfo, cluster: Cluster) -> Item:
    labels = {
        "kubernetes.io/arch": _arch(),
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": host_platform.system().lower() or "linux",
        "node-role.kubernetes.io/control-plane": "",
    }
    internal = node.addresses[0] if node.addresses else "127.0.0.1"
    runtime = f"inferbox-local://{__version__}"
    pods = list(cluster.replicas)
    pod_rows = [[r.namespace, r.name, _age(r.started_at, cluster.now)] for r in pods]
    manifest = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _metadata(node.name, None, labels, node.created),
        "spec": {},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": internal},
                {"type": "Hostname", "address": node.name},
            ],
            "capacity": {"cpu": node.capacity_cpu, "memory": node.capacity_memory},
            "allocatable": {"cpu": node.allocatable_cpu, "memory": node.allocatable_memory},
            "conditions": [{"type": "Ready", "status": "True" if node.status == "Ready" else "False"}],
            "nodeInfo": {
                "architecture": _arch(),
                "containerRuntimeVersion": runtime,
                "kernelVersion": host_platform.release(),
                "kubeletVersion": _version(node.version),
                "operatingSystem": host_platform.system().lower(),
                "osImage": _os_image(),
            },
        },
    }
    describe: Block = [
        ("Name", node.name),
        ("Roles", "control-plane"),
        ("Labels", _labels_text(labels)),
        ("Annotations", ["<none>"]),
        ("CreationTimestamp", _rfc1123(node.created)),
        ("Unschedulable", "false"),
        ("Addresses", [("InternalIP", internal), ("Hostname", node.name)]),
        ("Capacity", [("cpu", node.capacity_cpu), ("memory", node.capacity_memory)]),
        ("Allocatable", [("cpu", node.allocatable_cpu), ("memory", node.allocatable_memory)]),
        (
            "System Info",
            [
                ("Kernel Version", host_platform.release()),
                ("OS Image", _os_image()),
                ("Operating System", host_platform.system().lower()),
                ("Architecture", _arch()),
                ("Container Runtime Version", runtime),
                ("Kubelet Version", _version(node.version)),
            ],
        ),
        ("Non-terminated Pods", f"({len(pods)} in total)"),
    ]
    if pod_rows:
        describe.append(("Pods", "\n" + table(["Namespace", "Name", "Age"], pod_rows)))
    describe.append(("Events", "<none>"))
    return Item(
        kind=NODES,
        name=node.name,
        namespace=None,
        labels=labels,
        cells=[node.status, "control-plane", _age(node.created, cluster.now), _version(node.version)],
        wide=[internal, "<none>", _os_image(), host_platform.release(), runtime],
        manifest=manifest,
        describe=describe,
    )


def items_of(kind: Kind, cluster: Cluster) -> list[Item]:
    """Every object of a kind, in every namespace."""
    if kind is PODS:
        return [_pod(r, cluster) for r in cluster.replicas]
    if kind is DEPLOYMENTS:
        return [_deployment(m, cluster) for m in cluster.models]
    if kind is INFERENCE_SERVICES:
        return [_inference_service(m, cluster) for m in cluster.models]
    if kind is NAMESPACES:
        return [_namespace(t, cluster) for t in cluster.namespaces]
    if kind is NODES:
        return [_node(n, cluster) for n in cluster.nodes]
    return []


# --------------------------------------------------------------------------------------------------
# Label selectors


class SelectorError(ValueError):
    pass


_SET_REQ = re.compile(r"^([A-Za-z0-9._/\-]+)\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_REQ = re.compile(r"^([A-Za-z0-9._/\-]+)\s*(==|=|!=)\s*([A-Za-z0-9._\-]*)$")
_EXISTS = re.compile(r"^(!?)\s*([A-Za-z0-9._/\-]+)$")


def parse_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A label selector (`a=b,c!=d,e in (f,g),!h`) as a predicate on labels."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    checks: list[Callable[[dict[str, str]], bool]] = []
    for raw in parts:
        req = raw.strip()
        if not req:
            if text.strip():
                raise SelectorError(f'unable to parse requirement: found "" in "{text}"')
            continue
        if m := _SET_REQ.match(req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _EQ_REQ.match(req):
            key, op, value = m.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := _EXISTS.match(req):
            negate, key = m.group(1) == "!", m.group(2)
            checks.append(lambda labels, k=key, n=negate: (k in labels) != n)
        else:
            raise SelectorError(f'unable to parse requirement: "{req}"')
    return lambda labels: all(check(labels) for check in checks)


# --------------------------------------------------------------------------------------------------
# Answering


@dataclass(frozen=True)
class Answer:
    """What kubectl would print (stdout and stderr, in order) and its exit code."""

    text: str
    exit_code: int = 0


class _Fail(Exception):
    """An answer that is an error, as kubectl prints it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Flags every verb accepts that change nothing on the local runtime.
_NO_EFFECT = frozenset(
    {"request-timeout", "match-server-version", "warnings-as-errors", "disable-compression", "namespace"}
)
_SUPPORTED: dict[str, frozenset[str]] = {
    "get": frozenset(
        {
            "all-namespaces",
            "selector",
            "output",
            "no-headers",
            "show-labels",
            "show-kind",
            "ignore-not-found",
            "label-columns",
            "chunk-size",
            "server-print",
            "allow-missing-template-keys",
            "show-managed-fields",
            "output-watch-events",
            "recursive",
        }
    ),
    "describe": frozenset({"all-namespaces", "selector", "show-events", "chunk-size", "recursive"}),
    "logs": frozenset(
        {"container", "tail", "selector", "prefix", "all-containers", "ignore-errors", "pod-running-timeout"}
    ),
    "top": frozenset({"all-namespaces", "selector", "no-headers", "sort-by", "sum", "use-protocol-buffers"}),
    "api-resources": frozenset({"output", "namespaced", "api-group", "no-headers", "cached"}),
    "version": frozenset({"client", "output"}),
    "explain": frozenset({"recursive", "api-version"}),
}

HELP = {
    "get": "Display one or many resources.\n\nUsage:\n  kubectl get [(-o|--output=)json|yaml|name|wide] "
    "(TYPE[.VERSION][.GROUP] [NAME | -l label] | TYPE[.VERSION][.GROUP]/NAME ...) [flags] [options]",
    "describe": "Show details of a specific resource or group of resources.\n\nUsage:\n  kubectl describe "
    "(-f FILENAME | TYPE [NAME_PREFIX | -l label] | TYPE/NAME) [options]",
    "logs": "Print the logs for a container in a pod.\n\nUsage:\n  kubectl logs (POD | TYPE/NAME) "
    "[-c CONTAINER] [--tail N] [options]",
    "top": "Display resource (CPU/memory) usage.\n\nAvailable Commands:\n  node          Display resource "
    "(CPU/memory) usage of nodes\n  pod           Display resource (CPU/memory) usage of pods\n\nUsage:\n"
    "  kubectl top [flags] [options]",
    "api-resources": "Print the supported API resources on the server.\n\nUsage:\n  kubectl api-resources "
    "[flags] [options]",
    "version": "Print the client and server version information for the current context.\n\nUsage:\n"
    "  kubectl version [flags] [options]",
    "explain": "Describe fields and structure of various resources.\n\nUsage:\n  kubectl explain TYPE "
    "[--recursive=FALSE|TRUE] [--api-version=api-version-group] [options]",
}


def _check_flags(command: KubectlCommand) -> None:
    supported = _SUPPORTED.get(command.verb, frozenset())
    for flag in command.flags:
        if flag.name not in supported and flag.name not in _NO_EFFECT and flag.name != "help":
            raise _Fail(f"error: flag {flag.spelling} is not supported by the local runtime")


def _namespace_of(command: KubectlCommand) -> str:
    return command.value("namespace") or DEFAULT_NAMESPACE


def _no_resources(namespace: str | None) -> str:
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


def _unknown_type(word: str) -> _Fail:
    return _Fail(f'error: the server doesn\'t have a resource type "{word}"')


def _targets(command: KubectlCommand, verb: str) -> list[tuple[Kind, list[str]]]:
    """(kind, names) pairs from `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`."""
    args = list(command.args)
    if not args:
        raise _Fail(
            f'error: you must specify the type of resource to {verb}. Use "kubectl api-resources" for a '
            "complete list of supported resources."
        )
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise _Fail(
                "error: there is no need to specify a resource type as a separate argument when passing "
                "arguments in resource/name form (e.g. 'kubectl get resource/<resource_name>' instead of "
                "'kubectl get resource resource/<resource_name>'"
            )
        out: list[tuple[Kind, list[str]]] = []
        for arg in args:
            type_word, _, name = arg.partition("/")
            kind = resolve_kind(type_word)
            if kind is None:
                raise _unknown_type(type_word)
            if not name:
                raise _Fail("error: arguments in resource/name form must have a single resource and name")
            out.append((kind, [name]))
        return out
    kinds: list[Kind] = []
    for word in args[0].split(","):
        if not word:
            continue
        if word.lower() == "all":
            kinds.extend(ALL_CATEGORY)
            continue
        kind = resolve_kind(word)
        if kind is None:
            raise _unknown_type(word)
        kinds.append(kind)
    # kubectl prints each kind once, in the order first named.
    unique = list(dict.fromkeys(kinds))
    return [(kind, args[1:]) for kind in unique]


def _selector(command: KubectlCommand) -> Callable[[dict[str, str]], bool]:
    try:
        return parse_selector(command.value("selector") or "")
    except SelectorError as exc:
        raise _Fail(f"error: {exc}") from None


def _scoped(kind: Kind, items: list[Item], namespace: str | None) -> list[Item]:
    if not kind.namespaced or namespace is None:
        return items
    return [i for i in items if i.namespace == namespace]


def _find(items: list[Item], name: str, *, prefix: bool = False) -> list[Item]:
    exact = [i for i in items if i.name == name]
    if exact or not prefix:
        return exact
    return [i for i in items if i.name.startswith(name)]


def _not_found(kind: Kind, name: str) -> str:
    return f'Error from server (NotFound): {kind.qualified} "{name}" not found'


def _get(command: KubectlCommand, cluster: Cluster) -> Answer:
    everywhere = command.enabled("all-namespaces")
    namespace = None if everywhere else _namespace_of(command)
    output = (command.value("output") or "").strip()
    fmt = output.split("=", 1)[0].lower()
    if fmt not in ("", "wide", "json", "yaml", "name"):
        raise _Fail(
            f"error: output format {fmt!r} is not supported by the local runtime; use -o json or yaml"
        )
    targets = _targets(command, "get")
    if everywhere and any(names for _, names in targets):
        raise _Fail("error: a resource cannot be retrieved by name across all namespaces")
    wanted = _selector(command)
    found: list[tuple[Kind, list[Item]]] = []
    errors: list[str] = []
    single_object = len(targets) == 1 and len(targets[0][1]) == 1
    for kind, names in targets:
        items = [i for i in _scoped(kind, items_of(kind, cluster), namespace) if wanted(i.labels)]
        if names:
            picked: list[Item] = []
            for name in names:
                hits = _find(items, name)
                if not hits and not command.enabled("ignore-not-found"):
                    errors.append(_not_found(kind, name))
                picked.extend(hits)
            items = picked
        found.append((kind, items))
    all_items = [i for _, items in found for i in items]
    out: list[str] = []
    if fmt in ("json", "yaml"):
        if single_object and all_items:
            out.append(_dump(all_items[0].manifest, fmt))
        elif all_items or not errors:
            listing = {
                "apiVersion": "v1",
                "items": [i.manifest for i in all_items],
                "kind": "List",
                "metadata": {"resourceVersion": ""},
            }
            out.append(_dump(listing, fmt))
    elif fmt == "name":
        out.extend(f"{i.kind.name_prefix}/{i.name}" for i in all_items)
    else:
        tables = [
            _table(kind, items, command, wide=fmt == "wide", prefixed=len(targets) > 1)
            for kind, items in found
            if items
        ]
        out.append("\n\n".join(tables))
        if not all_items and not errors:
            cluster_scoped = all(not kind.namespaced for kind, _ in targets)
            out = [_no_resources(None if (everywhere or cluster_scoped) else namespace)]
    text = "\n".join([o for o in out if o] + errors)
    return Answer(text, 1 if errors else 0)


def _table(kind: Kind, items: list[Item], command: KubectlCommand, *, wide: bool, prefixed: bool) -> str:
    headers, wide_headers = HEADERS.get(kind.plural, (["AGE"], []))
    label_columns = [
        c for f in command.flags if f.name == "label-columns" for c in (f.value or "").split(",") if c
    ]
    everywhere = command.enabled("all-namespaces") and kind.namespaced
    head = (["NAMESPACE"] if everywhere else []) + ["NAME", *headers]
    if wide:
        head += wide_headers
    head += [c.rsplit("/", 1)[-1].upper() for c in label_columns]
    show_labels = command.enabled("show-labels")
    if show_labels:
        head.append("LABELS")
    show_kind = prefixed or command.enabled("show-kind")
    rows = []
    for item in sorted(items, key=lambda i: (i.namespace or "", i.name)):
        name = f"{item.kind.name_prefix}/{item.name}" if show_kind else item.name
        row = ([item.namespace or ""] if everywhere else []) + [name, *item.cells]
        if wide:
            row += item.wide
        row += [item.labels.get(c, "") for c in label_columns]
        if show_labels:
            row.append(",".join(f"{k}={v}" for k, v in sorted(item.labels.items())) or "<none>")
        rows.append(row)
    return table(None if command.enabled("no-headers") else head, rows)


def _describe(command: KubectlCommand, cluster: Cluster) -> Answer:
    everywhere = command.enabled("all-namespaces")
    namespace = None if everywhere else _namespace_of(command)
    targets = _targets(command, "describe")
    wanted = _selector(command)
    blocks: list[str] = []
    errors: list[str] = []
    for kind, names in targets:
        items = [i for i in _scoped(kind, items_of(kind, cluster), namespace) if wanted(i.labels)]
        if names:
            picked: list[Item] = []
            for name in names:
                hits = _find(items, name, prefix=True)
                if not hits:
                    errors.append(_not_found(kind, name))
                picked.extend(hits)
            items = picked
        for item in sorted(items, key=lambda i: (i.namespace or "", i.name)):
            blocks.append("\n".join(describe_block(item.describe, min_width=18)))
    if not blocks and not errors:
        cluster_scoped = all(not kind.namespaced for kind, _ in targets)
        return Answer(_no_resources(None if (everywhere or cluster_scoped) else namespace))
    return Answer("\n\n\n".join(blocks + (["\n".join(errors)] if errors else [])), 1 if errors else 0)


async def _logs(command: KubectlCommand, cluster: Cluster, runtime: ReplicaLogs) -> Answer:
    namespace = _namespace_of(command)
    container = command.value("container")
    if container and container != CONTAINER:
        target = command.args[0] if command.args else "?"
        raise _Fail(f"error: container {container} is not valid for pod {target}")
    selector = command.value("selector")
    tail_text = command.value("tail")
    try:
        tail = int(tail_text) if tail_text is not None else (10 if selector else -1)
    except ValueError:
        raise _Fail(f'error: invalid argument "{tail_text}" for "--tail" flag: parse error') from None
    lines = MAX_LOG_LINES if tail < 0 else min(tail, MAX_LOG_LINES)
    pods = [r for r in cluster.replicas if r.namespace == namespace]
    if selector is not None:
        if command.args:
            raise _Fail("error: only one of selector or a pod name may be given")
        wanted = _selector(command)
        chosen = [r for r in pods if wanted(r.labels)]
        if not chosen:
            return Answer(_no_resources(namespace))
    else:
        if len(command.args) != 1:
            raise _Fail(
                "error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\n"
                "POD or TYPE/NAME is a required argument for the logs command"
            )
        chosen = [_pod_for_logs(command.args[0], pods)]
    prefix = command.enabled("prefix") or len(chosen) > 1
    out: list[str] = []
    for replica in chosen:
        for line in await runtime.logs(namespace, replica.model, lines, replica=replica.name):
            out.append(f"[pod/{replica.name}/{CONTAINER}] {line}" if prefix else line)
    return Answer("\n".join(out))


def _pod_for_logs(arg: str, pods: list[ReplicaInfo]) -> ReplicaInfo:
    type_word, slash, name = arg.partition("/")
    if not slash:
        type_word, name = "pod", arg
    kind = resolve_kind(type_word)
    if kind is None:
        raise _unknown_type(type_word)
    if kind is PODS:
        for replica in pods:
            if replica.name == name:
                return replica
        raise _Fail(_not_found(PODS, name))
    if kind is DEPLOYMENTS:
        owned = sorted(
            (r for r in pods if f"{r.model}-predictor" == name), key=lambda r: (not r.ready, r.started_at)
        )
        if owned:
            return owned[0]
        raise _Fail(_not_found(DEPLOYMENTS, name))
    raise _Fail(
        f"error: cannot get the logs from {kind.qualified}: selector for {kind.plural} is not implemented"
    )


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


async def node_cpu_millicores(interval: float = 0.25) -> int | None:
    """CPU in use on this machine, in millicores, over a short sampling window."""
    first = _cpu_times()
    if first is None:
        return None
    await asyncio.sleep(interval)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])
    return round(share * (os.cpu_count() or 1) * 1000)


def _mi(num_bytes: int) -> str:
    return f"{num_bytes // (1024 * 1024)}Mi"


async def _top(command: KubectlCommand, cluster: Cluster) -> Answer:
    if not command.args:
        return Answer(HELP["top"])
    what = command.args[0].lower()
    if what in ("pod", "pods", "po"):
        return _top_pods(command, cluster)
    if what in ("node", "nodes", "no"):
        return await _top_nodes(command, cluster)
    raise _Fail(f'error: unknown command "{command.args[0]}" for "kubectl top"')


def _top_pods(command: KubectlCommand, cluster: Cluster) -> Answer:
    everywhere = command.enabled("all-namespaces")
    namespace = None if everywhere else _namespace_of(command)
    wanted = _selector(command)
    pods = [
        r for r in cluster.replicas if (namespace is None or r.namespace == namespace) and wanted(r.labels)
    ]
    names = command.args[1:]
    if names:
        pods = [r for r in pods if r.name in names]
        if not pods:
            raise _Fail(_not_found(PODS, names[0]))
    if not pods:
        return Answer(_no_resources(namespace))
    measured = [r for r in pods if r.cpu_millicores is not None and r.memory_bytes is not None]
    if not measured:
        raise _Fail("error: metrics not available yet")
    sort_by = (command.value("sort-by") or "").lower()
    if sort_by == "cpu":
        measured.sort(key=lambda r: -(r.cpu_millicores or 0))
    elif sort_by == "memory":
        measured.sort(key=lambda r: -(r.memory_bytes or 0))
    elif sort_by:
        raise _Fail("error: --sort-by accepts only cpu or memory")
    else:
        measured.sort(key=lambda r: (r.namespace, r.name))
    head = (["NAMESPACE"] if everywhere else []) + ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = [
        ([r.namespace] if everywhere else []) + [r.name, f"{r.cpu_millicores}m", _mi(r.memory_bytes or 0)]
        for r in measured
    ]
    if command.enabled("sum"):
        cpu = sum(r.cpu_millicores or 0 for r in measured)
        mem = sum(r.memory_bytes or 0 for r in measured)
        rows.append(([""] if everywhere else []) + ["", "________", "________"])
        rows.append(([""] if everywhere else []) + ["", f"{cpu}m", _mi(mem)])
    return Answer(table(None if command.enabled("no-headers") else head, rows))


async def _top_nodes(command: KubectlCommand, cluster: Cluster) -> Answer:
    cpu = await node_cpu_millicores()
    mem = meminfo()
    total = mem.get("MemTotal")
    if cpu is None or not total:
        raise _Fail("error: metrics not available yet")
    used = total - mem.get("MemAvailable", mem.get("MemFree", 0))
    wanted = _selector(command)
    rows = []
    for item in items_of(NODES, cluster):
        if not wanted(item.labels) or (command.args[1:] and item.name not in command.args[1:]):
            continue
        cpus = int(cluster.nodes[0].capacity_cpu) if cluster.nodes else os.cpu_count() or 1
        rows.append(
            [item.name, f"{cpu}m", f"{cpu * 100 // (cpus * 1000)}%", _mi(used), f"{used * 100 // total}%"]
        )
    if not rows:
        return Answer(_no_resources(None))
    head = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    return Answer(table(None if command.enabled("no-headers") else head, rows))


def _api_resources(command: KubectlCommand) -> Answer:
    fmt = (command.value("output") or "").lower()
    group = command.value("api-group")
    kinds = sorted(ALL_KINDS, key=lambda k: (k.group != "", k.group, k.plural))
    if command.has("namespaced"):
        namespaced = command.enabled("namespaced")
        kinds = [k for k in kinds if k.namespaced == namespaced]
    if group is not None:
        kinds = [k for k in kinds if k.group == group]
    if fmt == "name":
        return Answer("\n".join(k.qualified for k in kinds))
    head = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = [
        [k.plural, ",".join(k.short), k.api_version, str(k.namespaced).lower(), k.kind]
        + ([f"[{' '.join(k.verbs)}]"] if fmt == "wide" else [])
        for k in kinds
    ]
    if fmt == "wide":
        head.append("VERBS")
    return Answer(table(None if command.enabled("no-headers") else head, rows))


def _version_answer(command: KubectlCommand) -> Answer:
    client = {
        "gitVersion": f"v{__version__}+inferbox",
        "platform": f"{host_platform.system().lower()}/{_arch()}",
    }
    server = {"gitVersion": f"v{__version__}+inferbox-local", "platform": client["platform"]}
    fmt = (command.value("output") or "").lower()
    only_client = command.enabled("client")
    if fmt in ("json", "yaml"):
        body: dict[str, Any] = {"clientVersion": client}
        if not only_client:
            body["serverVersion"] = server
        return Answer(_dump(body, fmt))
    if fmt:
        raise _Fail("error: --output must be 'yaml' or 'json'")
    lines = [f"Client Version: {client['gitVersion']}"]
    if not only_client:
        lines.append(f"Server Version: {server['gitVersion']}")
    return Answer("\n".join(lines))


_EXPLAIN_FIELDS = (
    (
        "apiVersion",
        "<string>",
        "APIVersion defines the versioned schema of this representation of an object.",
    ),
    ("kind", "<string>", "Kind is a string value representing the REST resource this object represents."),
    ("metadata", "<ObjectMeta>", "Standard object's metadata."),
    ("spec", "<Object>", "The desired state of the object."),
    ("status", "<Object>", "The observed state of the object. Read-only."),
)


def _explain(command: KubectlCommand) -> Answer:
    if not command.args:
        raise _Fail(
            'error: You must specify the type of resource to explain. Use "kubectl api-resources" for a '
            "complete list of supported resources."
        )
    path = command.args[0].split(".")
    kind = resolve_kind(path[0])
    if kind is None:
        raise _Fail(f'error: couldn\'t find resource for "{path[0]}"')
    if len(path) > 1 and resolve_kind(command.args[0]) is None:
        field_name = path[1]
        if field_name not in {f for f, _, _ in _EXPLAIN_FIELDS}:
            raise _Fail(f'error: field "{field_name}" does not exist')
        if len(path) > 2:
            raise _Fail("error: explaining nested fields is not supported by the local runtime")
        _, type_name, text = next(f for f in _EXPLAIN_FIELDS if f[0] == field_name)
        return Answer(
            f"KIND:       {kind.kind}\nVERSION:    {kind.api_version}\n\nFIELD: {field_name} {type_name}\n\n"
            f"DESCRIPTION:\n    {text}"
        )
    fields = "\n\n".join(f"  {name}\t{type_name}\n    {text}" for name, type_name, text in _EXPLAIN_FIELDS)
    description = kind.description or f"{kind.kind} (no objects of this kind on the local runtime)."
    return Answer(
        f"KIND:       {kind.kind}\nVERSION:    {kind.api_version}\n\nDESCRIPTION:\n    {description}\n\n"
        f"FIELDS:\n{fields}"
    )


async def answer(command: KubectlCommand, cluster: Cluster, runtime: ReplicaLogs) -> Answer:
    """Answer a validated command from a snapshot of the cluster."""
    if command.enabled("help"):
        return Answer(HELP[command.verb])
    try:
        _check_flags(command)
        verb = command.verb
        if verb == "get":
            return _get(command, cluster)
        if verb == "describe":
            return _describe(command, cluster)
        if verb == "logs":
            return await _logs(command, cluster, runtime)
        if verb == "top":
            return await _top(command, cluster)
        if verb == "api-resources":
            return _api_resources(command)
        if verb == "version":
            return _version_answer(command)
        if verb == "explain":
            return _explain(command)
        raise _Fail(f'error: unknown command "{verb}" for "kubectl"')
    except _Fail as exc:
        return Answer(exc.message, 1)


async def run(command: KubectlCommand, platform: Platform) -> Answer:
    """Answer a validated command from the platform's current state."""
    cluster = await snapshot(platform)
    return await answer(command, cluster, platform.runtime)  # type: ignore[arg-type]
