"""`kubectl top pod|node`: the replicas' and this machine's CPU and memory, as kubectl prints them."""

from __future__ import annotations

from inferbox.runtime.base import ReplicaInfo
from inferbox.runtime.kubectl.guard import KubectlCommand
from inferbox.runtime.local.kubectl.cluster import Cluster
from inferbox.runtime.local.kubectl.kinds import NODES, PODS
from inferbox.runtime.local.kubectl.objects import items_of
from inferbox.runtime.local.kubectl.printers import mebibytes, table
from inferbox.runtime.local.kubectl.targets import Fail, namespace_of, no_resources, not_found, selector
from inferbox.runtime.local.kubectl.usage import memory_in_use, node_cpu_millicores

USAGE = (
    "Display resource (CPU/memory) usage.\n\nAvailable Commands:\n  node          Display resource "
    "(CPU/memory) usage of nodes\n  pod           Display resource (CPU/memory) usage of pods\n\nUsage:\n"
    "  kubectl top [flags] [options]"
)
NO_METRICS = "error: metrics not available yet"


def _sorted(measured: list[ReplicaInfo], sort_by: str) -> list[ReplicaInfo]:
    if sort_by == "cpu":
        return sorted(measured, key=lambda r: -(r.cpu_millicores or 0))
    if sort_by == "memory":
        return sorted(measured, key=lambda r: -(r.memory_bytes or 0))
    if sort_by:
        raise Fail("error: --sort-by accepts only cpu or memory")
    return sorted(measured, key=lambda r: (r.namespace, r.name))


def _selected_pods(command: KubectlCommand, cluster: Cluster, namespace: str | None) -> list[ReplicaInfo]:
    wanted = selector(command)
    pods = [
        r for r in cluster.replicas if (namespace is None or r.namespace == namespace) and wanted(r.labels)
    ]
    names = command.args[1:]
    if names:
        pods = [r for r in pods if r.name in names]
        if not pods:
            raise Fail(not_found(PODS, names[0]))
    return pods


def top_pods(command: KubectlCommand, cluster: Cluster) -> str:
    everywhere = command.enabled("all-namespaces")
    namespace = None if everywhere else namespace_of(command)
    pods = _selected_pods(command, cluster, namespace)
    if not pods:
        return no_resources(namespace)
    measured = [r for r in pods if r.cpu_millicores is not None and r.memory_bytes is not None]
    if not measured:
        raise Fail(NO_METRICS)
    measured = _sorted(measured, (command.value("sort-by") or "").lower())
    lead = [""] if everywhere else []
    head = (["NAMESPACE"] if everywhere else []) + ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = [
        ([r.namespace] if everywhere else [])
        + [r.name, f"{r.cpu_millicores}m", mebibytes(r.memory_bytes or 0)]
        for r in measured
    ]
    if command.enabled("sum"):
        cpu = sum(r.cpu_millicores or 0 for r in measured)
        mem = sum(r.memory_bytes or 0 for r in measured)
        rows.append([*lead, "", "________", "________"])
        rows.append([*lead, "", f"{cpu}m", mebibytes(mem)])
    return table(None if command.enabled("no-headers") else head, rows)


async def top_nodes(command: KubectlCommand, cluster: Cluster) -> str:
    cpu = await node_cpu_millicores()
    memory: list[tuple[int, int]] = []
    for info in cluster.nodes:
        figures = memory_in_use(info)
        if figures is None:
            raise Fail(NO_METRICS)
        memory.append(figures)
    if cpu is None:
        raise Fail(NO_METRICS)
    wanted = selector(command)
    names = command.args[1:]
    rows = []
    for info, (used, total), item in zip(cluster.nodes, memory, items_of(NODES, cluster), strict=True):
        if not wanted(item.labels) or (names and item.name not in names):
            continue
        cpu_share = f"{cpu * 100 // (int(info.capacity_cpu) * 1000)}%"
        rows.append([item.name, f"{cpu}m", cpu_share, mebibytes(used), f"{used * 100 // total}%"])
    if not rows:
        return no_resources(None)
    head = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    return table(None if command.enabled("no-headers") else head, rows)


async def top(command: KubectlCommand, cluster: Cluster) -> str:
    """`top` alone prints its usage; `top pod|pods|po` and `top node|nodes|no` answer."""
    if not command.args:
        return USAGE
    what = command.args[0].lower()
    if what in ("pod", "pods", "po"):
        return top_pods(command, cluster)
    if what in ("node", "nodes", "no"):
        return await top_nodes(command, cluster)
    raise Fail(f'error: unknown command "{command.args[0]}" for "kubectl top"')
