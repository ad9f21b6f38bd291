"""The objects of each kind the local runtime has, built from the snapshot.

A pod is a replica, a Deployment (`{model}-predictor`) and an InferenceService are a model, a namespace
is a tenant and the node is this machine. Each becomes an `Item`: its table cells (`get`, `-o wide`), its
manifest (`-o json|yaml`, as the API server would return it) and its `describe` block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferbox import __version__
from inferbox.runtime.base import READY, NodeInfo, ReplicaInfo
from inferbox.runtime.local.kubectl import host
from inferbox.runtime.local.kubectl.cluster import Cluster, ModelState, Namespace
from inferbox.runtime.local.kubectl.items import CONTAINER, IMAGE, Item, conditions_table, metadata
from inferbox.runtime.local.kubectl.kinds import (
    DEPLOYMENTS,
    INFERENCE_SERVICES,
    NAMESPACES,
    NODES,
    PODS,
    Kind,
)
from inferbox.runtime.local.kubectl.printers import Block, age, labels_text, rfc1123, table
from inferbox.timefmt import iso


def _split_address(address: str | None) -> tuple[str | None, int | None]:
    if not address:
        return None, None
    host_part, _, port = address.rpartition(":")
    return host_part.strip("[]") or None, int(port) if port.isdigit() else None


# -- pods: one a replica ---------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class _Pod:
    """A replica as a pod: what its manifest and its describe block both read."""

    replica: ReplicaInfo
    node: str
    ip: str | None
    port: int | None
    phase: str  # the pod's phase
    state: str  # the container's state: running, waiting or terminated
    reason: str | None

    @classmethod
    def of(cls, replica: ReplicaInfo, node: str) -> _Pod:
        ip, port = _split_address(replica.address)
        phase, state, reason = _POD_STATES.get(replica.phase, ("Unknown", "waiting", replica.phase))
        return cls(replica, node, ip, port, phase, state, reason)

    @property
    def ready(self) -> str:
        return "True" if self.replica.ready else "False"

    @property
    def conditions(self) -> list[dict[str, str]]:
        pairs = (
            ("Initialized", "True"),
            ("Ready", self.ready),
            ("ContainersReady", self.ready),
            ("PodScheduled", "True"),
        )
        return [{"type": t, "status": s} for t, s in pairs]

    @property
    def container_id(self) -> str | None:
        return f"local://{self.replica.pid}" if self.replica.pid else None


def _pod_status(pod: _Pod) -> dict[str, Any]:
    replica = pod.replica
    started = iso(replica.started_at)
    container_state: dict[str, Any] = {pod.state: {"startedAt": started} if pod.state == "running" else {}}
    if pod.reason:
        container_state[pod.state]["reason"] = pod.reason
    container_status: dict[str, Any] = {
        "name": CONTAINER,
        "image": IMAGE,
        "ready": replica.ready,
        "restartCount": replica.restarts,
        "started": replica.phase == "Running",
        "state": container_state,
    }
    if pod.container_id:
        container_status["containerID"] = pod.container_id
    status: dict[str, Any] = {
        "phase": pod.phase,
        "conditions": pod.conditions,
        "hostIP": "127.0.0.1",
        "startTime": started,
        "containerStatuses": [container_status],
    }
    if pod.ip:
        status["podIP"] = pod.ip
        status["podIPs"] = [{"ip": pod.ip}]
    return status


def _pod_manifest(pod: _Pod) -> dict[str, Any]:
    replica = pod.replica
    container: dict[str, Any] = {"name": CONTAINER, "image": IMAGE}
    if pod.port:
        container["ports"] = [{"containerPort": pod.port, "protocol": "TCP"}]
    meta = metadata(replica.name, replica.namespace, replica.labels, replica.started_at)
    meta["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{replica.model}-predictor"}
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [container], "nodeName": pod.node, "restartPolicy": "Always"},
        "status": _pod_status(pod),
    }


def _pod_describe(pod: _Pod) -> Block:
    replica = pod.replica
    state_block: Block = [("Started", rfc1123(replica.started_at))] if pod.state == "running" else []
    if pod.reason:
        state_block = [("Reason", pod.reason)]
    port = f"{pod.port}/TCP" if pod.port else "<none>"
    container_block: Block = [
        ("Container ID", pod.container_id or "<none>"),
        ("Image", IMAGE),
        ("Port", port),
        ("Host Port", port),
        ("State", pod.state.capitalize()),
        *[(f"  {k}", v) for k, v in state_block],
        ("Ready", pod.ready),
        ("Restart Count", str(replica.restarts)),
    ]
    return [
        ("Name", replica.name),
        ("Namespace", replica.namespace),
        ("Priority", "0"),
        ("Service Account", "default"),
        ("Node", f"{pod.node}/127.0.0.1"),
        ("Start Time", rfc1123(replica.started_at)),
        ("Labels", labels_text(replica.labels)),
        ("Annotations", ["<none>"]),
        ("Status", "Terminating" if replica.phase == "Terminating" else pod.phase),
        ("IP", pod.ip or ""),
        ("Controlled By", f"Deployment/{replica.model}-predictor"),
        ("Containers", [(CONTAINER, container_block)]),
        (
            "Conditions",
            conditions_table(["Type", "Status"], [[c["type"], c["status"]] for c in pod.conditions]),
        ),
        ("QoS Class", "BestEffort"),
        ("Node-Selectors", "<none>"),
        ("Tolerations", "<none>"),
        ("Events", "<none>"),
    ]


def pod(replica: ReplicaInfo, cluster: Cluster) -> Item:
    view = _Pod.of(replica, cluster.node_name)
    return Item(
        kind=PODS,
        name=replica.name,
        namespace=replica.namespace,
        labels=dict(replica.labels),
        cells=[
            "1/1" if replica.ready else "0/1",
            replica.phase,
            str(replica.restarts),
            age(replica.started_at, cluster.now),
        ],
        wide=[view.ip or "<none>", view.node, "<none>", "<none>"],
        manifest=_pod_manifest(view),
        describe=_pod_describe(view),
    )


# -- deployments: one a model's predictor -----------------------------------------------------------------


def _model_labels(model: ModelState) -> dict[str, str]:
    return {"serving.kserve.io/inferenceservice": model.name, "app": model.deployment}


def _deployment_manifest(model: ModelState, labels: dict[str, str], available: str) -> dict[str, Any]:
    desired, ready, total = model.desired, model.ready_replicas, model.total
    meta = metadata(model.deployment, model.namespace, labels, model.created)
    meta["generation"] = model.generation
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
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec, "status": status}


def _deployment_describe(model: ModelState, labels: dict[str, str], available: str) -> Block:
    desired, ready, total = model.desired, model.ready_replicas, model.total
    replicas = (
        f"{desired} desired | {total} updated | {total} total | {ready} available | "
        f"{max(total - ready, 0)} unavailable"
    )
    containers = [(CONTAINER, [("Image", IMAGE), ("Args", [f"--model_name={model.name}"])])]
    return [
        ("Name", model.deployment),
        ("Namespace", model.namespace),
        ("CreationTimestamp", rfc1123(model.created)),
        ("Labels", labels_text(labels)),
        ("Annotations", ["<none>"]),
        ("Selector", f"app={model.deployment}"),
        ("Replicas", replicas),
        ("StrategyType", "RollingUpdate"),
        ("Pod Template", [("Labels", labels_text(labels)), ("Containers", containers)]),
        ("Conditions", conditions_table(["Type", "Status"], [["Available", available]])),
        ("Events", "<none>"),
    ]


def deployment(model: ModelState, cluster: Cluster) -> Item:
    labels = _model_labels(model)
    desired, ready, total = model.desired, model.ready_replicas, model.total
    available = "True" if ready >= min(desired, 1) else "False"
    return Item(
        kind=DEPLOYMENTS,
        name=model.deployment,
        namespace=model.namespace,
        labels=labels,
        cells=[f"{ready}/{desired}", str(total), str(ready), age(model.created, cluster.now)],
        wide=[CONTAINER, IMAGE, f"app={model.deployment}"],
        manifest=_deployment_manifest(model, labels, available),
        describe=_deployment_describe(model, labels, available),
    )


# -- inferenceservices: one a model ------------------------------------------------------------------------


def _isvc_conditions(model: ModelState) -> list[dict[str, Any]]:
    return [c.to_json() for c in (model.status.conditions if model.status else ())]


def _isvc_manifest(model: ModelState, url: str) -> dict[str, Any]:
    status = model.status
    predictor: dict[str, Any] = {
        "minReplicas": model.min_replicas,
        "maxReplicas": model.max_replicas,
        "scaleTarget": model.scale_target,
        "scaleMetric": model.scale_metric,
        "model": {"modelFormat": {"name": model.framework}, "storageUri": model.storage_uri},
    }
    if model.args:
        predictor["model"]["args"] = list(model.args)
    isvc_status: dict[str, Any] = {
        "conditions": _isvc_conditions(model),
        "modelStatus": {
            "states": {"activeModelState": status.phase if status else "Unknown"},
            "transitionStatus": "UpToDate" if status and status.phase == READY else "InProgress",
        },
    }
    if url:
        isvc_status["url"] = url
    return {
        "apiVersion": INFERENCE_SERVICES.api_version,
        "kind": "InferenceService",
        "metadata": {
            **metadata(model.name, model.namespace, {}, model.created),
            "generation": model.generation,
        },
        "spec": {"predictor": predictor},
        "status": isvc_status,
    }


def _isvc_describe(model: ModelState, url: str) -> Block:
    conditions = _isvc_conditions(model)
    rows = [[c["type"], c["status"], c["reason"]] for c in conditions]
    model_block: Block = [("Model Format", [("Name", model.framework)]), ("Storage Uri", model.storage_uri)]
    predictor: Block = [
        ("Max Replicas", str(model.max_replicas)),
        ("Min Replicas", str(model.min_replicas)),
        ("Model", model_block),
        ("Scale Metric", model.scale_metric),
        ("Scale Target", str(model.scale_target)),
    ]
    status: Block = [
        ("Conditions", conditions_table(["Type", "Status", "Reason"], rows) if conditions else ["<none>"]),
        ("Model Status", [("Active Model State", model.status.phase if model.status else "Unknown")]),
        ("URL", url or "<none>"),
    ]
    created: Block = [
        ("Creation Timestamp", iso(model.created) or "<unknown>"),
        ("Generation", str(model.generation)),
    ]
    return [
        ("Name", model.name),
        ("Namespace", model.namespace),
        ("Labels", ["<none>"]),
        ("Annotations", ["<none>"]),
        ("API Version", INFERENCE_SERVICES.api_version),
        ("Kind", "InferenceService"),
        ("Metadata", created),
        ("Spec", [("Predictor", predictor)]),
        ("Status", status),
        ("Events", "<none>"),
    ]


def inference_service(model: ModelState, cluster: Cluster) -> Item:
    status = model.status
    ready = "Unknown" if status is None else ("True" if status.ready else "False")
    url = (status.url if status else None) or ""
    return Item(
        kind=INFERENCE_SERVICES,
        name=model.name,
        namespace=model.namespace,
        labels={},
        cells=[url, ready, "", "", "", "", age(model.created, cluster.now)],
        wide=[],
        manifest=_isvc_manifest(model, url),
        describe=_isvc_describe(model, url),
    )


# -- namespaces: one a tenant ------------------------------------------------------------------------------


def namespace(tenant: Namespace, cluster: Cluster) -> Item:
    labels = {"kubernetes.io/metadata.name": tenant.name}
    return Item(
        kind=NAMESPACES,
        name=tenant.name,
        namespace=None,
        labels=labels,
        cells=[tenant.status, age(tenant.created, cluster.now)],
        wide=[],
        manifest={
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": metadata(tenant.name, None, labels, tenant.created),
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": tenant.status},
        },
        describe=[
            ("Name", tenant.name),
            ("Labels", labels_text(labels)),
            ("Annotations", ["<none>"]),
            ("Status", tenant.status),
            ("Resource Quota", "<none>"),
            ("LimitRange", "<none>"),
        ],
    )


# -- nodes: this machine -----------------------------------------------------------------------------------

_CONTAINER_RUNTIME = f"inferbox-local://{__version__}"


def _kubelet_version(value: str) -> str:
    return value if value.startswith("v") else f"v{value}"


def _node_labels(node: NodeInfo) -> dict[str, str]:
    return {
        "kubernetes.io/arch": host.arch(),
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": host.operating_system() or "linux",
        "node-role.kubernetes.io/control-plane": "",
    }


def _internal_ip(node: NodeInfo) -> str:
    return node.addresses[0] if node.addresses else "127.0.0.1"


def _node_manifest(node: NodeInfo, labels: dict[str, str]) -> dict[str, Any]:
    status = {
        "addresses": [
            {"type": "InternalIP", "address": _internal_ip(node)},
            {"type": "Hostname", "address": node.name},
        ],
        "capacity": {"cpu": node.capacity_cpu, "memory": node.capacity_memory},
        "allocatable": {"cpu": node.allocatable_cpu, "memory": node.allocatable_memory},
        "conditions": [{"type": "Ready", "status": "True" if node.status == "Ready" else "False"}],
        "nodeInfo": {
            "architecture": host.arch(),
            "containerRuntimeVersion": _CONTAINER_RUNTIME,
            "kernelVersion": host.kernel(),
            "kubeletVersion": _kubelet_version(node.version),
            "operatingSystem": host.operating_system(),
            "osImage": host.os_image(),
        },
    }
    meta = metadata(node.name, None, labels, node.created)
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {}, "status": status}


def _node_describe(node: NodeInfo, labels: dict[str, str], cluster: Cluster) -> Block:
    system: Block = [
        ("Kernel Version", host.kernel()),
        ("OS Image", host.os_image()),
        ("Operating System", host.operating_system()),
        ("Architecture", host.arch()),
        ("Container Runtime Version", _CONTAINER_RUNTIME),
        ("Kubelet Version", _kubelet_version(node.version)),
    ]
    describe: Block = [
        ("Name", node.name),
        ("Roles", "control-plane"),
        ("Labels", labels_text(labels)),
        ("Annotations", ["<none>"]),
        ("CreationTimestamp", rfc1123(node.created)),
        ("Unschedulable", "false"),
        ("Addresses", [("InternalIP", _internal_ip(node)), ("Hostname", node.name)]),
        ("Capacity", [("cpu", node.capacity_cpu), ("memory", node.capacity_memory)]),
        ("Allocatable", [("cpu", node.allocatable_cpu), ("memory", node.allocatable_memory)]),
        ("System Info", system),
        ("Non-terminated Pods", f"({len(cluster.replicas)} in total)"),
    ]
    pod_rows = [[r.namespace, r.name, age(r.started_at, cluster.now)] for r in cluster.replicas]
    if pod_rows:
        describe.append(("Pods", "\n" + table(["Namespace", "Name", "Age"], pod_rows)))
    describe.append(("Events", "<none>"))
    return describe


def node(info: NodeInfo, cluster: Cluster) -> Item:
    labels = _node_labels(info)
    return Item(
        kind=NODES,
        name=info.name,
        namespace=None,
        labels=labels,
        cells=[info.status, "control-plane", age(info.created, cluster.now), _kubelet_version(info.version)],
        wide=[_internal_ip(info), "<none>", host.os_image(), host.kernel(), _CONTAINER_RUNTIME],
        manifest=_node_manifest(info, labels),
        describe=_node_describe(info, labels, cluster),
    )


def items_of(kind: Kind, cluster: Cluster) -> list[Item]:
    """Every object of a kind, in every namespace (none for the kinds the local runtime has none of)."""
    if kind is PODS:
        return [pod(r, cluster) for r in cluster.replicas]
    if kind is DEPLOYMENTS:
        return [deployment(m, cluster) for m in cluster.models]
    if kind is INFERENCE_SERVICES:
        return [inference_service(m, cluster) for m in cluster.models]
    if kind is NAMESPACES:
        return [namespace(t, cluster) for t in cluster.namespaces]
    if kind is NODES:
        return [node(n, cluster) for n in cluster.nodes]
    return []
