"""The local runtime's answers, verb by verb: get, describe, logs, top, api-resources, version, explain.

`answer` dispatches a command the guard let through. Which flags exist for a verb is the guard's one
allow-list (`guard.VERB_FLAGS`); `CANNOT_HONOUR` names those among them that this view cannot answer
for, and a command using one gets kubectl-style `error: flag ... is not supported by the local runtime`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from inferbox import __version__
from inferbox.logs import MAX_LOG_LINES
from inferbox.runtime.base import ReplicaInfo
from inferbox.runtime.kubectl.guard import KubectlCommand
from inferbox.runtime.local.kubectl import host
from inferbox.runtime.local.kubectl.cluster import Cluster
from inferbox.runtime.local.kubectl.items import CONTAINER, HEADERS, Item
from inferbox.runtime.local.kubectl.kinds import ALL_KINDS, DEPLOYMENTS, PODS, Kind, resolve_kind
from inferbox.runtime.local.kubectl.objects import items_of
from inferbox.runtime.local.kubectl.printers import describe_block, dump, table
from inferbox.runtime.local.kubectl.targets import (
    Fail,
    namespace_of,
    no_resources,
    not_found,
    pick,
    scoped,
    selector,
    targets,
    unknown_type,
)
from inferbox.runtime.local.kubectl.top import USAGE as TOP_USAGE
from inferbox.runtime.local.kubectl.top import top

# Flags the guard allows that this view cannot honour, by verb. Every other flag the guard allows is
# answered, or changes nothing here (such as --request-timeout).
CANNOT_HONOUR: dict[str, frozenset[str]] = {
    "get": frozenset({"field-selector", "sort-by", "subresource"}),
    "logs": frozenset(
        {"previous", "since", "since-time", "timestamps", "limit-bytes", "max-log-requests", "all-pods"}
    ),
    "top": frozenset({"containers", "field-selector", "show-capacity"}),
    "api-resources": frozenset({"sort-by", "verbs", "categories"}),
    "explain": frozenset({"output"}),
}

HELP = {
    "get": "Display one or many resources.\n\nUsage:\n  kubectl get [(-o|--output=)json|yaml|name|wide] "
    "(TYPE[.VERSION][.GROUP] [NAME | -l label] | TYPE[.VERSION][.GROUP]/NAME ...) [flags] [options]",
    "describe": "Show details of a specific resource or group of resources.\n\nUsage:\n  kubectl describe "
    "(-f FILENAME | TYPE [NAME_PREFIX | -l label] | TYPE/NAME) [options]",
    "logs": "Print the logs for a container in a pod.\n\nUsage:\n  kubectl logs (POD | TYPE/NAME) "
    "[-c CONTAINER] [--tail N] [options]",
    "top": TOP_USAGE,
    "api-resources": "Print the supported API resources on the server.\n\nUsage:\n  kubectl api-resources "
    "[flags] [options]",
    "version": "Print the client and server version information for the current context.\n\nUsage:\n"
    "  kubectl version [flags] [options]",
    "explain": "Describe fields and structure of various resources.\n\nUsage:\n  kubectl explain TYPE "
    "[--recursive=FALSE|TRUE] [--api-version=api-version-group] [options]",
}


@dataclass(frozen=True)
class Answer:
    """What kubectl would print (stdout and stderr, in order) and its exit code."""

    text: str
    exit_code: int = 0


class ReplicaLogs(Protocol):
    """The part of the local runtime that reads one replica's output."""

    async def logs(self, namespace: str, name: str, lines: int, replica: str | None = None) -> list[str]: ...


def check_flags(command: KubectlCommand) -> None:
    """Fail on the first flag the guard allowed that this view cannot honour."""
    cannot = CANNOT_HONOUR.get(command.verb, frozenset())
    for flag in command.flags:
        if flag.name in cannot:
            raise Fail(f"error: flag {flag.spelling} is not supported by the local runtime")


# -- get ---------------------------------------------------------------------------------------------------


def _get_table(kind: Kind, items: list[Item], command: KubectlCommand, *, wide: bool, prefixed: bool) -> str:
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


def _get_output(
    command: KubectlCommand, fmt: str, found: list[tuple[Kind, list[Item]]], *, single: bool, failed: bool
) -> list[str]:
    """What `get` prints of the objects found, in the format asked for."""
    all_items = [i for _, items in found for i in items]
    if fmt in ("json", "yaml"):
        if single and all_items:
            return [dump(all_items[0].manifest, fmt)]
        if all_items or not failed:
            listing = {
                "apiVersion": "v1",
                "items": [i.manifest for i in all_items],
                "kind": "List",
                "metadata": {"resourceVersion": ""},
            }
            return [dump(listing, fmt)]
        return []
    if fmt == "name":
        return [f"{i.kind.name_prefix}/{i.name}" for i in all_items]
    tables = [
        _get_table(kind, items, command, wide=fmt == "wide", prefixed=len(found) > 1)
        for kind, items in found
        if items
    ]
    return ["\n\n".join(tables)]


def get(command: KubectlCommand, cluster: Cluster) -> Answer:
    everywhere = command.enabled("all-namespaces")
    namespace = None if everywhere else namespace_of(command)
    fmt = (command.value("output") or "").strip().split("=", 1)[0].lower()
    if fmt not in ("", "wide", "json", "yaml", "name"):
        raise Fail(f"error: output format {fmt!r} is not supported by the local runtime; use -o json or yaml")
    wanted_targets = targets(command, "get")
    if everywhere and any(names for _, names in wanted_targets):
        raise Fail("error: a resource cannot be retrieved by name across all namespaces")
    wanted = selector(command)
    found: list[tuple[Kind, list[Item]]] = []
    errors: list[str] = []
    for kind, names in wanted_targets:
        items = [i for i in scoped(kind, items_of(kind, cluster), namespace) if wanted(i.labels)]
        items, missing = pick(
            items, kind, names, prefix=False, missing_ok=command.enabled("ignore-not-found")
        )
        errors.extend(missing)
        found.append((kind, items))
    single = len(wanted_targets) == 1 and len(wanted_targets[0][1]) == 1
    out = _get_output(command, fmt, found, single=single, failed=bool(errors))
    if fmt not in ("json", "yaml", "name") and not any(items for _, items in found) and not errors:
        cluster_scoped = all(not kind.namespaced for kind, _ in wanted_targets)
        out = [no_resources(None if (everywhere or cluster_scoped) else namespace)]
    text = "\n".join([o for o in out if o] + errors)
    return Answer(text, 1 if errors else 0)


# -- describe, logs ----------------------------------------------------------------------------------------


def describe(command: KubectlCommand, cluster: Cluster) -> Answer:
    everywhere = command.enabled("all-namespaces")
    namespace = None if everywhere else namespace_of(command)
    wanted_targets = targets(command, "describe")
    wanted = selector(command)
    blocks: list[str] = []
    errors: list[str] = []
    for kind, names in wanted_targets:
        items = [i for i in scoped(kind, items_of(kind, cluster), namespace) if wanted(i.labels)]
        items, missing = pick(items, kind, names, prefix=True, missing_ok=False)
        errors.extend(missing)
        for item in sorted(items, key=lambda i: (i.namespace or "", i.name)):
            blocks.append("\n".join(describe_block(item.describe, min_width=18)))
    if not blocks and not errors:
        cluster_scoped = all(not kind.namespaced for kind, _ in wanted_targets)
        return Answer(no_resources(None if (everywhere or cluster_scoped) else namespace))
    return Answer("\n\n\n".join(blocks + (["\n".join(errors)] if errors else [])), 1 if errors else 0)


def _pod_for_logs(arg: str, pods: list[ReplicaInfo]) -> ReplicaInfo:
    """The replica `logs POD`, `logs pod/POD` or `logs deployment/NAME` reads (a Deployment's ready
    replica first, then the oldest)."""
    type_word, slash, name = arg.partition("/")
    if not slash:
        type_word, name = "pod", arg
    kind = resolve_kind(type_word)
    if kind is None:
        raise unknown_type(type_word)
    if kind is PODS:
        for replica in pods:
            if replica.name == name:
                return replica
        raise Fail(not_found(PODS, name))
    if kind is DEPLOYMENTS:
        owned = sorted(
            (r for r in pods if f"{r.model}-predictor" == name), key=lambda r: (not r.ready, r.started_at)
        )
        if owned:
            return owned[0]
        raise Fail(not_found(DEPLOYMENTS, name))
    raise Fail(
        f"error: cannot get the logs from {kind.qualified}: selector for {kind.plural} is not implemented"
    )


def _log_lines(command: KubectlCommand, selector_given: bool) -> int:
    """How many lines to read: `--tail`, else all (10 with a selector, as kubectl), at most MAX_LOG_LINES."""
    tail_text = command.value("tail")
    try:
        tail = int(tail_text) if tail_text is not None else (10 if selector_given else -1)
    except ValueError:
        raise Fail(f'error: invalid argument "{tail_text}" for "--tail" flag: parse error') from None
    return MAX_LOG_LINES if tail < 0 else min(tail, MAX_LOG_LINES)


async def logs(command: KubectlCommand, cluster: Cluster, runtime: ReplicaLogs) -> Answer:
    namespace = namespace_of(command)
    container = command.value("container")
    if container and container != CONTAINER:
        target = command.args[0] if command.args else "?"
        raise Fail(f"error: container {container} is not valid for pod {target}")
    by_selector = command.value("selector") is not None
    lines = _log_lines(command, by_selector)
    pods = [r for r in cluster.replicas if r.namespace == namespace]
    if by_selector:
        if command.args:
            raise Fail("error: only one of selector or a pod name may be given")
        wanted = selector(command)
        chosen = [r for r in pods if wanted(r.labels)]
        if not chosen:
            return Answer(no_resources(namespace))
    else:
        if len(command.args) != 1:
            raise Fail(
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


# -- api-resources, version, explain -----------------------------------------------------------------------


def api_resources(command: KubectlCommand) -> Answer:
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


def version(command: KubectlCommand) -> Answer:
    client = {
        "gitVersion": f"v{__version__}+inferbox",
        "platform": f"{host.operating_system()}/{host.arch()}",
    }
    server = {"gitVersion": f"v{__version__}+inferbox-local", "platform": client["platform"]}
    fmt = (command.value("output") or "").lower()
    only_client = command.enabled("client")
    if fmt in ("json", "yaml"):
        body: dict[str, Any] = {"clientVersion": client}
        if not only_client:
            body["serverVersion"] = server
        return Answer(dump(body, fmt))
    if fmt:
        raise Fail("error: --output must be 'yaml' or 'json'")
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


def explain(command: KubectlCommand) -> Answer:
    """`explain TYPE` (the kind and its top-level fields) or `explain TYPE.FIELD` (one of them)."""
    if not command.args:
        raise Fail(
            'error: You must specify the type of resource to explain. Use "kubectl api-resources" for a '
            "complete list of supported resources."
        )
    path = command.args[0].split(".")
    kind = resolve_kind(path[0])
    if kind is None:
        raise Fail(f'error: couldn\'t find resource for "{path[0]}"')
    head = f"KIND:       {kind.kind}\nVERSION:    {kind.api_version}\n\n"
    if len(path) > 1 and resolve_kind(command.args[0]) is None:
        field_name = path[1]
        if field_name not in {f for f, _, _ in _EXPLAIN_FIELDS}:
            raise Fail(f'error: field "{field_name}" does not exist')
        if len(path) > 2:
            raise Fail("error: explaining nested fields is not supported by the local runtime")
        _, type_name, text = next(f for f in _EXPLAIN_FIELDS if f[0] == field_name)
        return Answer(f"{head}FIELD: {field_name} {type_name}\n\nDESCRIPTION:\n    {text}")
    fields = "\n\n".join(f"  {name}\t{type_name}\n    {text}" for name, type_name, text in _EXPLAIN_FIELDS)
    description = kind.description or f"{kind.kind} (no objects of this kind on the local runtime)."
    return Answer(f"{head}DESCRIPTION:\n    {description}\n\nFIELDS:\n{fields}")


# -- dispatch ----------------------------------------------------------------------------------------------

_PLAIN: dict[str, Callable[[KubectlCommand], Answer]] = {
    "api-resources": api_resources,
    "version": version,
    "explain": explain,
}


async def _dispatch(command: KubectlCommand, cluster: Cluster, runtime: ReplicaLogs) -> Answer:
    verb = command.verb
    if verb == "get":
        return get(command, cluster)
    if verb == "describe":
        return describe(command, cluster)
    if verb == "logs":
        return await logs(command, cluster, runtime)
    if verb == "top":
        return Answer(await top(command, cluster))
    if verb in _PLAIN:
        return _PLAIN[verb](command)
    raise Fail(f'error: unknown command "{verb}" for "kubectl"')


async def answer(command: KubectlCommand, cluster: Cluster, runtime: ReplicaLogs) -> Answer:
    """Answer a command the guard let through from a snapshot of the cluster; `runtime` reads the logs
    of one replica. kubectl's errors are answers too, with exit code 1."""
    if command.enabled("help"):
        return Answer(HELP[command.verb])
    try:
        check_flags(command)
        return await _dispatch(command, cluster, runtime)
    except Fail as exc:
        return Answer(exc.message, 1)
