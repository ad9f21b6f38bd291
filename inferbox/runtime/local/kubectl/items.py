"""One object as kubectl prints it, in every form: table cells, manifest, `describe` block.

The shapes shared by every kind (`Item`, each kind's table columns, an object's `metadata`); the objects
of each kind are built in `objects`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inferbox import __version__
from inferbox.runtime.local.kubectl.kinds import Kind
from inferbox.runtime.local.kubectl.printers import Block, table
from inferbox.timefmt import iso

# The one container of every pod, and its image: the model server at this version.
CONTAINER = "kserve-container"
IMAGE = f"local/inferbox-model-server:{__version__}"


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


# Each kind's table columns after NAME, and those `-o wide` adds; `Item.cells` and `Item.wide` match.
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


def metadata(
    name: str, namespace: str | None, labels: dict[str, str], created: datetime | None
) -> dict[str, Any]:
    """An object's `metadata`, as the API server writes it (no `namespace` for cluster-scoped kinds)."""
    meta: dict[str, Any] = {"name": name, "creationTimestamp": iso(created)}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def conditions_table(headers: list[str], rows: list[list[str]]) -> str:
    """A `Conditions:` body for `describe`: a table printed under its key."""
    return "\n" + table(headers, rows)
