"""The Runtime interface: one small surface, two backends (local processes, Kubernetes with KServe).

The control plane owns the desired state (in the store) and hands it to the runtime as `ModelSpec`s;
the runtime reports observed state as `ModelStatus` and `ReplicaInfo`. Phases mirror KServe's model
states so that the API reads the same whichever backend runs.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from inferbox.timefmt import iso

# Phases, as KServe names a model's states.
PENDING = "Pending"
LOADING = "Loading"
READY = "Ready"
FAILED_TO_LOAD = "FailedToLoad"
UNKNOWN = "Unknown"


class ModelNotRunning(Exception):
    """No replica could take a request in time (not ready, failed, or deleted)."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# The events a runtime emits; the control plane's bus carries them to /ws with its own.
MODEL_STATUS_CHANGED = "model.statusChanged"
MODEL_SCALED = "model.scaled"


class EventSink(Protocol):
    """Where a runtime reports what it observes (the control plane's event bus)."""

    def publish(self, type: str, namespace: str, name: str, data: dict[str, Any] | None = None) -> object: ...


class SpecRefused(Exception):
    """The runtime cannot run this spec (`scaleMetric: cpu` on the local runtime, a storageUri it
    cannot use, ...); the message is meant for the user and names the field."""


class RuntimeUnavailable(Exception):
    """The backend cannot be reached or refused for its own reasons (the Kubernetes API is down or
    answering 5xx): the caller may retry; the store keeps what was asked (the API answers 503)."""


class RuntimeLocked(Exception):
    """Another process owns this runtime's resources (its data dir or its lease in the store)."""


@dataclass(frozen=True)
class ModelSpec:
    """The desired state of one model, as the store holds it."""

    namespace: str
    name: str
    framework: str
    storage_uri: str
    min_replicas: int = 1
    max_replicas: int = 1
    scale_target: int = 10
    scale_metric: str = "concurrency"
    # The framework's options as the API takes them (`{"task": "text-generation"}` for huggingface),
    # handed to the model server as `--task=...`; see `server_args`. Part of what a generation is.
    args: dict[str, Any] = field(default_factory=dict)
    # Bumped when framework, storage_uri or args change: replicas of an older generation are rolled.
    generation: int = 1
    # The local runtime's stable port for the model's URL (None: let the runtime choose and report it).
    port: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def server_args(self) -> list[str]:
        """`args` as inferbox's model server takes them (`--task=text-generation`). KServe's
        huggingface server spells its tasks its own way (see kubernetes/manifests.py)."""
        task = self.args.get("task")
        return [f"--task={task}"] if task else []


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: datetime

    def to_json(self) -> dict[str, str | None]:
        """As KServe's status writes a condition."""
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": iso(self.last_transition_time),
        }


@dataclass(frozen=True)
class ModelStatus:
    """What the runtime observes of one model."""

    phase: str
    ready: bool
    url: str | None
    desired: int
    ready_replicas: int
    total: int
    conditions: tuple[Condition, ...] = ()
    restarts: int = 0
    # A short machine-readable reason while not ready (e.g. "CrashLoopBackOff"), and the loader's message.
    reason: str | None = None
    message: str | None = None
    port: int | None = None
    # Replicas wanted that the machine (or cluster) has no room for, as Pending pods.
    pending: int = 0
    # Why the model failed (FailedToLoad): the loader's or the runtime's message.
    error: str | None = None
    # Where the replicas serve the gRPC Open Inference Protocol (on the host of `url`), when they do.
    grpc_port: int | None = None


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica: a pod in Kubernetes' words."""

    name: str  # "{model}-predictor-{suffix}"
    namespace: str
    model: str
    phase: str  # "Running" | "Pending" | "ContainerCreating" | "CrashLoopBackOff" | "Terminating" | "Error"
    ready: bool
    restarts: int
    started_at: datetime
    address: str | None = None  # "127.0.0.1:port"
    pid: int | None = None
    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    status: str
    version: str
    capacity_cpu: str
    capacity_memory: str
    allocatable_cpu: str
    allocatable_memory: str
    created: datetime | None = None
    addresses: tuple[str, ...] = ()
    # The exact bytes behind capacity_memory and allocatable_memory (which are rounded down to a whole
    # unit), for usage figures such as `kubectl top node`; None where the backend does not report them.
    capacity_memory_bytes: int | None = None
    allocatable_memory_bytes: int | None = None


class Runtime(Protocol):
    """What the control plane needs from a backend."""

    name: str

    async def start(self, specs: list[ModelSpec]) -> None:
        """Begin running; bring every given model back to its desired replicas (after a restart)."""

    async def close(self) -> None:
        """Stop background work. The local runtime drains and stops its replicas."""

    def check(self, spec: ModelSpec) -> None:
        """Raise SpecRefused with a user-facing message for a spec this backend cannot run
        (e.g. `scaleMetric: cpu` on the local runtime); called before anything is written."""

    async def apply(self, spec: ModelSpec) -> ModelStatus:
        """Create or update a model. Returns at once; replicas start in the background.

        Raises SpecRefused with a user-facing message for a spec the backend cannot run
        (e.g. `scaleMetric: cpu` on the local runtime)."""

    async def delete(self, namespace: str, name: str) -> None:
        """Drain and stop every replica of a model and forget it."""

    def status(self, namespace: str, name: str) -> ModelStatus | None:
        """Observed state, or None for a model the runtime does not know."""

    def connect(self, namespace: str, name: str, timeout: float) -> AbstractAsyncContextManager[str]:
        """Pick a ready replica (least outstanding requests) and hold it for one request.

        Yields the replica's base URL (`http://127.0.0.1:PORT`). Waits up to `timeout` seconds for a
        replica, scaling up from zero when needed; raises ModelNotRunning when none comes."""

    async def logs(self, namespace: str, name: str, lines: int) -> list[str]:
        """The most recent output lines of the model's replicas, oldest first."""

    def replicas(self, namespace: str | None = None) -> list[ReplicaInfo]:
        """Replicas of every model (or of one namespace)."""

    def nodes(self) -> list[NodeInfo]:
        """The machines replicas run on."""
