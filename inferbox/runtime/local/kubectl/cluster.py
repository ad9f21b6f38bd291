"""The cluster the local kubectl answers from: one snapshot per command, as plain values.

The control plane builds it (`inferbox.control.cluster.snapshot`) from what the store wants and what the
runtime sees. Nothing in it is live (no ORM rows, no runtime objects) and nothing here reads the store
or the runtime: the answers read the snapshot, and the runtime only for a replica's log lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from inferbox.runtime.base import ModelStatus, NodeInfo, ReplicaInfo


@dataclass(frozen=True)
class Namespace:
    """A tenant, which kubectl shows as a namespace."""

    name: str
    status: str
    created: datetime | None


@dataclass(frozen=True)
class ModelState:
    """A model as the store wants it and the runtime sees it (`status` None: the runtime does not know
    it)."""

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
    # The options the replicas run with (`--task=text-generation`), as `predictor.model.args` shows them.
    args: tuple[str, ...] = ()

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
    """Everything one answer reads, taken at `now` (the time AGE counts back from)."""

    now: datetime
    nodes: list[NodeInfo]
    namespaces: list[Namespace]
    models: list[ModelState]
    replicas: list[ReplicaInfo]

    @property
    def node_name(self) -> str:
        """The node every pod runs on (the local runtime has one)."""
        return self.nodes[0].name if self.nodes else "localhost"
