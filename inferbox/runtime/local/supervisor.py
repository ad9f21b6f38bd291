"""One model's supervisor: how many replicas of which generation, and keeping it so.

A `ModelGroup` owns the model's stable listening socket and its replicas. Its reconcile step compares
what runs with what is wanted (`desired` replicas of the spec's `generation`) and starts or drains
replicas; the autoscaler's tick moves `desired` within the spec's bounds, and a request to a model
scaled to zero activates it. The group coordinates; its collaborators, each in a module of its own and
each seeing the group through a small Protocol (what it reads, what it reports), do the rest:

- `downloads.Downloads`: fetching the current generation, removing the copies no replica needs;
- `routing.ReplicaRouter`: which ready replica takes a `connect()` request, and waiting for one;
- `scale_from_zero.ScaleFromZeroWatcher`: a caller on the stable URL wakes a model scaled to zero;
- `status.StatusReporter`: the phase, the KServe conditions and the `model.statusChanged` events;
- `logs.LogRings`: the replicas' output lines, for `logs()`;
- `slots.ReplicaSlots` (shared by every group): how many replica processes the machine may hold.

Everything runs on the event loop of the control plane; no locks, because nothing here is touched from
another thread (`status()` only reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import socket
import string
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from inferbox.logs import MAX_LOG_LINES
from inferbox.runtime.base import MODEL_SCALED, READY, EventSink, ModelSpec, ModelStatus, SpecRefused
from inferbox.runtime.local import sockets
from inferbox.runtime.local.autoscaler import Autoscaler, Bounds
from inferbox.runtime.local.downloads import Downloads
from inferbox.runtime.local.logs import LogRings
from inferbox.runtime.local.orphans import OrphanRegistry
from inferbox.runtime.local.replica import CRASH_LOOP, ERROR, Replica
from inferbox.runtime.local.routing import ReplicaRouter
from inferbox.runtime.local.scale_from_zero import ScaleFromZeroWatcher
from inferbox.runtime.local.slots import ReplicaSlots
from inferbox.runtime.local.status import StatusReporter

log = logging.getLogger(__name__)

SUPPORTED_METRICS = ("concurrency", "rps")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class RuntimeSettings:
    """The local runtime's knobs. Those the control plane's settings also have carry the same names
    there (`inferbox.config.Settings`), so that the one is made from the other field for field."""

    # The address replicas listen on (loopback: only the gateway and the control plane call them).
    replica_host: str = "127.0.0.1"
    python: str = sys.executable
    max_batch_size: int = 32
    max_batch_wait_ms: float = 2.0
    poll_seconds: float = 0.5
    scale_to_zero_seconds: float = 60.0
    scale_down_delay_seconds: float = 30.0
    drain_seconds: float = 30.0
    stop_grace_seconds: float = 20.0
    max_body_bytes: int = 32 * 1024 * 1024
    # Output lines kept per replica, and how many departed replicas' lines are kept for logs().
    log_lines: int = MAX_LOG_LINES
    departed_logs: int = 5
    # Replica processes the machine may run at once, over all models (0: its memory over 256 MiB).
    replica_slots: int = 0


def check_spec(spec: ModelSpec) -> None:
    """Refuse a spec the local runtime cannot run, with a user-facing message (SpecRefused)."""
    if spec.scale_metric in ("cpu", "memory"):
        raise SpecRefused(
            f"scaleMetric '{spec.scale_metric}' is not supported on the local runtime; "
            "use 'concurrency' or 'rps'"
        )
    if spec.scale_metric not in SUPPORTED_METRICS:
        raise SpecRefused(f"scaleMetric '{spec.scale_metric}' is not supported; use 'concurrency' or 'rps'")
    if spec.min_replicas < 0:
        raise SpecRefused("minReplicas must be >= 0")
    if spec.max_replicas < 0:
        raise SpecRefused("maxReplicas must be >= 0")
    if spec.max_replicas and spec.max_replicas < spec.min_replicas:
        raise SpecRefused("maxReplicas must be >= minReplicas")
    if spec.scale_target <= 0:
        raise SpecRefused("scaleTarget must be > 0")
    if spec.port is not None and not 0 < spec.port < 65536:
        raise SpecRefused("port must be between 1 and 65535")


def _replica_name(model: str) -> str:
    return f"{model}-predictor-" + "".join(random.choices(_SUFFIX_ALPHABET, k=5))


def server_argv(
    settings: RuntimeSettings, spec: ModelSpec, model_path: Path, *, grpc_port: int | None = None
) -> list[str]:
    """The model server's command line for a replica of `spec` (the replica adds its sockets' fds);
    with `grpc_port`, the replica also serves gRPC there, on the replicas' host."""
    grpc = [] if grpc_port is None else ["--host", settings.replica_host, "--grpc-port", str(grpc_port)]
    return [
        settings.python,
        "-m",
        "inferbox.server",
        "--name",
        spec.name,
        "--framework",
        spec.framework,
        "--model-dir",
        str(model_path),
        *spec.server_args,
        "--max-batch-size",
        str(settings.max_batch_size),
        "--max-batch-wait-ms",
        f"{settings.max_batch_wait_ms:g}",
        "--max-body-bytes",
        str(settings.max_body_bytes),
        "--parent-pid",
        str(os.getpid()),
        *grpc,
    ]


class ModelGroup:
    """The supervisor of one model: stable socket, replicas, rolling updates, scaling."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: RuntimeSettings,
        *,
        data_dir: Path,
        http: httpx.AsyncClient,
        registry: OrphanRegistry,
        bus: EventSink,
        slots: ReplicaSlots | None = None,
    ) -> None:
        self.spec = spec
        self.slots = slots if slots is not None else ReplicaSlots(settings.replica_slots)
        self.settings = settings
        self._http = http
        self._registry = registry
        self._bus = bus
        self._loop = asyncio.get_running_loop()

        self.sock: socket.socket | None = None
        self.port: int | None = spec.port
        # The port the replicas serve gRPC on together, held by this socket (see sockets.reserve_shared).
        self.grpc_sock: socket.socket | None = None
        self.grpc_port: int | None = None
        self.replicas: list[Replica] = []
        self.desired = spec.min_replicas
        # Replicas wanted that found no free slot on the machine (the reconcile's last count).
        self.pending = 0
        self.restarts = 0
        # The current generation's load failure (FailedToLoad), or a storage / port problem.
        self.failure: str | None = None
        self.model_path: Path | None = None
        self.closing = False
        # Scaled to zero after being Ready: KServe keeps such a model Ready (the next request wakes it).
        self.idle_ready = False
        self.last_request_at = time.monotonic()
        self.autoscaler = Autoscaler(
            scale_down_delay=settings.scale_down_delay_seconds,
            scale_to_zero_after=settings.scale_to_zero_seconds,
        )
        self.downloads = Downloads(self, data_dir)
        self.router = ReplicaRouter(self, self._loop)
        self.watcher = ScaleFromZeroWatcher(self, self._loop)
        self.reporter = StatusReporter(self, bus, settings.replica_host)
        self.log_rings = LogRings(settings.log_lines, settings.departed_logs)

        self._kick = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.spec.min_replicas, self.spec.max_replicas, float(self.spec.scale_target))

    # -- life ---------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Bind the stable socket and begin reconciling: `max(min_replicas, 1)` replicas to start with."""
        self._bind()
        self.slots.listen(self.kick)
        self.desired = self.bounds.floor
        self._loop_task = self.spawn_task(
            self._reconcile_loop(), f"model {self.spec.namespace}/{self.spec.name}"
        )
        self.changed()

    def _bind(self) -> None:
        try:
            self.sock = sockets.listen_stable(self.settings.replica_host, self.spec.port)
        except OSError as exc:
            where = f"port {self.spec.port}" if self.spec.port else "a port"
            self.failure = f"cannot listen on {where} of {self.settings.replica_host}: {exc.strerror or exc}"
            return
        self.port = sockets.port_of(self.sock)
        if self.grpc_sock is None:
            try:
                self.grpc_sock = sockets.reserve_shared(self.settings.replica_host)
                self.grpc_port = sockets.port_of(self.grpc_sock)
            except OSError as exc:  # rare (no port left); HTTP still serves
                log.warning("model %s: no gRPC port: %s", self.spec.name, exc)

    def update(self, spec: ModelSpec) -> None:
        """A new desired state. A new generation rolls the replicas; other changes move the bounds."""
        old = self.spec
        if dataclasses.replace(spec, port=old.port) == old:
            # Nothing to do (at most the control plane now records the port this group chose; a bound
            # stable socket keeps its port for the group's life).
            self.spec = spec
            return
        self.spec = spec
        if self.sock is None:  # the port could not be bound before: try again
            self.failure = None
            self._bind()
        elif self.failure is not None or spec.generation != old.generation:
            # A changed spec is the signal to try loading again (KServe retries a new revision too).
            self.failure = None
        if spec.generation != old.generation:
            self.model_path = None
            self.idle_ready = False
            self.autoscaler.reset()
        # Replicas that failed to load belong to the spec that failed: a new try starts fresh ones.
        for replica in [r for r in self.replicas if r.phase == ERROR]:
            self._forget(replica)
        bounds = self.bounds
        floor = bounds.floor if (spec.generation != old.generation or self.desired > 0) else 0
        wanted = min(max(self.desired, floor, bounds.min_replicas), bounds.ceiling)
        if spec.generation != old.generation:
            self.last_request_at = time.monotonic()
        self._set_desired(wanted, "SpecChanged")
        self.kick()
        self.changed()

    async def close(self) -> None:
        """Drain and stop every replica and close the stable socket (delete, or runtime shutdown)."""
        self.closing = True
        self.watcher.stop()
        self.router.notify()
        if self._loop_task is not None:
            self._loop_task.cancel()
        self.slots.unlisten(self.kick)
        await asyncio.gather(*(r.stop(self.settings.drain_seconds) for r in list(self.replicas)))
        for replica in list(self.replicas):
            self.slots.give(replica)
        self.pending = 0
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.grpc_sock is not None:
            self.grpc_sock.close()
            self.grpc_sock = None
        for task in list(self._tasks):
            task.cancel()

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run `coro` in the background, cancelled when the group closes."""
        # Kept in a set: the loop holds only weak references to tasks.
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- reconcile --------------------------------------------------------------------------------------

    def kick(self) -> None:
        """Reconcile now rather than at the next poll interval."""
        self._kick.set()

    async def _reconcile_loop(self) -> None:
        while not self.closing:
            try:
                self._reconcile()
            except Exception:  # one bad step must not stop the model's supervision
                log.exception("reconcile of %s/%s failed", *self.spec.key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.settings.poll_seconds)
            self._kick.clear()

    def _reconcile(self) -> None:
        if self.closing or self.sock is None:
            return
        gen = self.spec.generation
        live = [r for r in self.replicas if not r.stopping]
        current = [r for r in live if r.generation == gen]
        older = [r for r in live if r.generation != gen]
        victims: list[Replica] = []
        pending = 0
        if self.failure is None:
            if self.model_path is None:
                self.downloads.ensure_fetched()
            else:
                missing = self.desired - len(current)
                for _ in range(missing):
                    if not self._start_replica():
                        pending += 1
                draining = any(r.stopping and r.generation != gen for r in self.replicas)
                if pending and older and not draining:
                    # The machine is full and a rolling update waits for room: replace one older
                    # replica at a time (Kubernetes' maxUnavailable: 1), or the update never proceeds.
                    victims.append(older.pop())
                if missing < 0:
                    # Scale down the least useful first: not ready, then least busy, then newest.
                    ranked = sorted(
                        current, key=lambda r: (r.ready, -r.outstanding, -r.created_at.timestamp())
                    )
                    victims.extend(ranked[:-missing])
        # A rolling update: older replicas go once the new generation serves with all it needs (they
        # keep serving while the new one loads, or if it fails to load).
        if older and self.failure is None and sum(r.ready for r in current) >= self.desired:
            victims.extend(older)
        for replica in victims:
            self.spawn_task(replica.stop(self.settings.drain_seconds), f"stop {replica.name}")
        if pending != self.pending:
            self.pending = pending
            self.changed()
        self.watcher.update()

    def _start_replica(self) -> bool:
        """Start one replica of the current generation if the machine has a free slot (True)."""
        assert self.sock is not None and self.model_path is not None
        spec = self.spec
        names = {r.name for r in self.replicas}
        name = _replica_name(spec.name)
        while name in names:
            name = _replica_name(spec.name)
        replica = Replica(
            self,
            name=name,
            generation=spec.generation,
            argv=server_argv(self.settings, spec, self.model_path, grpc_port=self.grpc_port),
            stable_fd=self.sock.fileno(),
            host=self.settings.replica_host,
            http=self._http,
            registry=self._registry,
            namespace=spec.namespace,
            model=spec.name,
            stop_grace=self.settings.stop_grace_seconds,
        )
        if not self.slots.take(replica):
            return False
        self.replicas.append(replica)
        replica.start()
        return True

    # -- scaling -----------------------------------------------------------------------------------------

    def activate(self) -> None:
        """A request came: note it and, if the model is scaled to zero, bring one replica up."""
        self.last_request_at = time.monotonic()
        if self.desired == 0 and not self.closing and self.failure is None:
            self._set_desired(max(self.bounds.floor, 1), "Activation")
            self.kick()
            self.changed()

    def _set_desired(self, wanted: int, reason: str, demand: float | None = None) -> None:
        if wanted == self.desired:
            return
        before, self.desired = self.desired, wanted
        if wanted == 0:
            self.autoscaler.reset()
            if self.reporter.phase() == READY:
                self.idle_ready = True
        data: dict[str, Any] = {"from": before, "to": wanted, "reason": reason}
        if demand is not None:
            data["metric"] = self.spec.scale_metric
            data["value"] = round(demand, 3)
        self._bus.publish(MODEL_SCALED, self.spec.namespace, self.spec.name, data)
        self.watcher.update()

    async def tick(self, now: float) -> None:
        """One autoscaler step: read every ready replica's stats, sample usage, decide `desired`."""
        ready = [r for r in self.replicas if r.ready]
        timeout = max(self.settings.poll_seconds * 2, 1.0)
        seen = await asyncio.gather(*(r.poll_stats(now, timeout) for r in ready))
        for replica in self.replicas:
            replica.usage.sample(replica.pid, now)
        if any(seen) or any(r.outstanding for r in self.replicas):
            self.last_request_at = time.monotonic()
        if self.closing or self.failure is not None or self.model_path is None:
            return
        # No decision while nothing serves yet: a model still loading has had no chance to be used,
        # and its idle window starts only once it serves.
        if self.desired > 0 and not any(r.ready and r.generation == self.spec.generation for r in ready):
            return
        metric = self.spec.scale_metric
        demand = sum(r.usage.rps if metric == "rps" else r.usage.concurrency for r in ready if r.ready)
        wanted = self.autoscaler.recommend(time.monotonic(), demand, self.bounds, self.last_request_at)
        if wanted != self.desired:
            reason = "ScaleToZero" if wanted == 0 else "ScaleUp" if wanted > self.desired else "ScaleDown"
            self._set_desired(wanted, reason, demand)
            self.kick()
            self.changed()

    # -- what replicas report (ReplicaOwner) -----------------------------------------------------------

    def replica_changed(self, replica: Replica) -> None:
        if replica.phase == CRASH_LOOP:
            self.restarts += 1
            self.idle_ready = False
        if replica.ready:
            self.idle_ready = False
            if replica.generation == self.spec.generation:
                # The idle window starts when the model can serve, not when it began loading.
                self.last_request_at = max(self.last_request_at, time.monotonic())
            self.kick()  # a rolling update may be able to proceed
        self.changed()

    def replica_output(self, replica: Replica, line: str) -> None:
        self.log_rings.append(replica.name, line)

    def replica_failed_to_load(self, replica: Replica, message: str) -> None:
        self.slots.give(replica)  # its process is gone, and no restart follows
        if replica.generation == self.spec.generation and not self.closing:
            self.failure = message
            log.warning("model %s/%s failed to load: %s", *self.spec.key, message)
        self.changed()

    def replica_finished(self, replica: Replica) -> None:
        self.slots.give(replica)
        if replica.phase != ERROR and replica in self.replicas:
            self._forget(replica)
        if replica.generation != self.spec.generation and not any(
            r.generation == replica.generation for r in self.replicas
        ):
            self.downloads.release(replica.generation)
        self.kick()
        self.changed()

    def _forget(self, replica: Replica) -> None:
        """Drop a replica from the list; its output stays readable until a few more have left."""
        if replica in self.replicas:
            self.replicas.remove(replica)
        self.log_rings.depart(replica.name)

    # -- status -----------------------------------------------------------------------------------------

    def changed(self) -> None:
        """Something observable changed: wake connect() waiters, and publish the status if it differs."""
        self.router.notify()
        if not self.closing:
            # Only here, on the event loop, are transition times recorded and events published:
            # status() itself only reads, since the control plane may call it from a worker thread.
            self.reporter.record()

    def status(self) -> ModelStatus:
        """The observed state, KServe-style. Reads only (safe to call from a worker thread)."""
        return self.reporter.status()
