"""A model's observed status, KServe-style: its phase, its conditions, and the status-changed events.

The phase follows KServe's model states (Pending, Loading, Ready, FailedToLoad); the conditions are
KServe's `Ready`, `PredictorReady` and `LatestDeploymentReady`, each with the time of its last transition
(kept from one status to the next while the condition's value stays the same). A model scaled to zero
after it was Ready stays Ready, as KServe keeps it: the next request starts a replica.

`status()` only reads, because the control plane may call it from a worker thread; `record()`, called
by the supervisor on the event loop after every change, is where transition times are remembered and
`model.statusChanged` is published (only when what it carries differs from the last one published).

Kept apart from the supervisor because it is a pure read-out of the model's state: it decides nothing
about replicas, and the supervisor's decisions do not depend on how the status is worded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from inferbox.runtime.base import (
    FAILED_TO_LOAD,
    LOADING,
    MODEL_STATUS_CHANGED,
    PENDING,
    READY,
    Condition,
    EventSink,
    ModelSpec,
    ModelStatus,
    ReplicaInfo,
)
from inferbox.runtime.local import sockets
from inferbox.runtime.local.replica import CRASH_LOOP, TERMINATING, Replica
from inferbox.runtime.local.slots import ReplicaSlots

# Condition reasons, as KServe names them.
REASON_READY = "ModelReady"
REASON_LOADING = "ModelLoading"
REASON_FAILED = "FailedToLoad"
REASON_CRASH = "CrashLoopBackOff"
REASON_UNSCHEDULABLE = "Unschedulable"  # as Kubernetes says of a pod no node can hold


class ObservedModel(Protocol):
    """What the status is made of: the model's state as its supervisor keeps it."""

    spec: ModelSpec
    replicas: list[Replica]
    desired: int
    # Replicas wanted that found no free slot on the machine.
    pending: int
    slots: ReplicaSlots
    restarts: int
    # The current generation's load failure (FailedToLoad), or a storage / port problem.
    failure: str | None
    model_path: Path | None
    # Scaled to zero after being Ready.
    idle_ready: bool
    port: int | None
    grpc_port: int | None
    closing: bool


class StatusReporter:
    """Reads a model's status and publishes its changes."""

    def __init__(self, model: ObservedModel, bus: EventSink, host: str) -> None:
        self._model = model
        self._bus = bus
        self._host = host
        self._conditions: dict[str, Condition] = {}
        self._published: dict[str, Any] | None = None

    def phase(self) -> str:
        model = self._model
        if model.failure is not None:
            return FAILED_TO_LOAD
        if any(r.ready for r in model.replicas) or model.idle_ready:
            return READY
        if any(r.phase != TERMINATING for r in model.replicas):
            return LOADING
        return PENDING

    def status(self) -> ModelStatus:
        """The observed state, KServe-style. Reads only (safe to call from a worker thread)."""
        model = self._model
        phase = self.phase()
        ready_n = sum(r.ready for r in model.replicas)
        total = sum(r.phase != TERMINATING for r in model.replicas)
        serves_latest, latest_reason, latest_message = self._current_state()
        ready = ready_n > 0 or phase == READY
        if ready:
            reason, message = REASON_READY, "Model is ready for inference"
            if ready_n == 0:
                message = latest_message
        else:
            reason, message = latest_reason, latest_message
        conditions = (
            self._condition("Ready", ready, reason, message),
            self._condition("PredictorReady", ready, reason, message),
            self._condition("LatestDeploymentReady", serves_latest, latest_reason, latest_message),
        )
        url = None
        if model.port is not None:
            url = f"http://{sockets.url_host(self._host)}:{model.port}/v1/models/{model.spec.name}:predict"
        # A short reason while not ready, or while the latest generation is not the one serving.
        short = None if ready and serves_latest else latest_reason
        long = None if short is None else latest_message
        if model.pending and model.failure is None and short in (None, REASON_LOADING):
            # Some replicas run (or none yet) and the rest wait for room, as pods left Pending.
            short, long = REASON_UNSCHEDULABLE, model.slots.explain(model.pending)
        return ModelStatus(
            phase=phase,
            ready=ready,
            url=url,
            desired=model.desired,
            ready_replicas=ready_n,
            total=total,
            conditions=conditions,
            restarts=model.restarts,
            reason=short,
            message=long,
            port=model.port,
            pending=model.pending,
            error=model.failure,
            grpc_port=model.grpc_port,
        )

    def record(self) -> None:
        """After a change, on the event loop: remember the conditions' transition times and publish
        the status if it differs from the last one published."""
        status = self.status()
        self._conditions = {c.type: c for c in status.conditions}
        self._publish(status)

    def replica_infos(self) -> list[ReplicaInfo]:
        """The model's replicas, as `kubectl get pods` would list them."""
        spec = self._model.spec
        labels = {"serving.kserve.io/inferenceservice": spec.name, "app": f"{spec.name}-predictor"}
        return [
            ReplicaInfo(
                name=r.name,
                namespace=spec.namespace,
                model=spec.name,
                phase=r.phase,
                ready=r.ready,
                restarts=r.restarts,
                started_at=r.created_at,
                address=r.address if r.has_process else None,
                pid=r.pid,
                cpu_millicores=r.usage.cpu_millicores,
                memory_bytes=r.usage.memory_bytes,
                labels=dict(labels),
            )
            for r in self._model.replicas
        ]

    def _current_state(self) -> tuple[bool, str, str]:
        """(serves, reason, message) of the current generation, for the conditions."""
        model = self._model
        gen = model.spec.generation
        current = [r for r in model.replicas if r.generation == gen and not r.stopping]
        ready = sum(r.ready for r in current)
        if model.failure is not None:
            return False, REASON_FAILED, model.failure
        if ready:
            return True, REASON_READY, "Model is ready for inference"
        if model.idle_ready and not current:
            return (
                True,
                REASON_READY,
                "Model is ready for inference (scaled to zero; a request starts a replica)",
            )
        crashing = [r for r in current if r.phase == CRASH_LOOP]
        if crashing:
            r = crashing[0]
            return (
                False,
                REASON_CRASH,
                f"replica {r.name} exited with code {r.last_exit}; restarting in {r.restart_in:g}s",
            )
        if model.idle_ready:
            return True, REASON_READY, "Model is ready for inference (starting a replica for a request)"
        if model.pending and not current:
            return False, REASON_UNSCHEDULABLE, model.slots.explain(model.pending)
        if model.model_path is None:
            return False, REASON_LOADING, "Fetching the model from its storageUri"
        return False, REASON_LOADING, f"Loading the model ({len(current)} replica(s) starting)"

    def _condition(self, type_: str, status: bool, reason: str, message: str) -> Condition:
        value = "True" if status else "False"
        old = self._conditions.get(type_)
        when = old.last_transition_time if old is not None and old.status == value else datetime.now(UTC)
        return Condition(type_, value, reason, message, when)

    def _publish(self, status: ModelStatus) -> None:
        data: dict[str, Any] = {
            "phase": status.phase,
            "ready": status.ready,
            "replicas": {
                "desired": status.desired,
                "ready": status.ready_replicas,
                "total": status.total,
                "pending": status.pending,
            },
            "restarts": status.restarts,
        }
        if status.reason is not None:
            data["reason"] = status.reason
        if status.message is not None:
            data["message"] = status.message
        if data != self._published and not self._model.closing:
            self._published = data
            spec = self._model.spec
            self._bus.publish(MODEL_STATUS_CHANGED, spec.namespace, spec.name, data)
