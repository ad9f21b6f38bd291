"""One model's replicas: how many, which generation, their health, and what the model's status is.

A `ModelGroup` owns the model's stable listening socket and its replicas. Its reconcile step compares
what runs with what is wanted (`desired` replicas of the spec's `generation`) and starts or drains
replicas; the autoscaler moves `desired` within the spec's bounds. Everything runs on the event loop
of the control plane; no locks, because nothing here is touched from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import random
import shutil
import socket
import string
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from inferbox import storage
from inferbox.runtime.base import (
    FAILED_TO_LOAD,
    LOADING,
    MODEL_SCALED,
    MODEL_STATUS_CHANGED,
    PENDING,
    READY,
    Condition,
    EventSink,
    ModelNotRunning,
    ModelSpec,
    ModelStatus,
    ReplicaInfo,
    SpecRefused,
)
from inferbox.runtime.local import sockets
from inferbox.runtime.local.autoscaler import Autoscaler, Bounds
from inferbox.runtime.local.orphans import OrphanRegistry
from inferbox.runtime.local.replica import CRASH_LOOP, ERROR, TERMINATING, Replica

log = logging.getLogger(__name__)

SUPPORTED_METRICS = ("concurrency", "rps")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits

# Condition reasons, as KServe names them.
REASON_READY = "ModelReady"
REASON_LOADING = "ModelLoading"
REASON_FAILED = "FailedToLoad"
REASON_CRASH = "CrashLoopBackOff"


@dataclass(frozen=True)
class Settings:
    """The runtime-wide knobs a model group needs."""

    data_dir: Path
    host: str
    python: str
    max_batch_size: int
    max_batch_wait_ms: float
    poll_interval: float
    scale_to_zero_seconds: float
    scale_down_delay_seconds: float
    # Output lines kept per replica, and how many departed replicas' lines are kept for logs().
    log_lines: int = 1000
    departed_logs: int = 5
    drain_timeout: float = 30.0
    stop_grace: float = 20.0
    max_body_bytes: int = 32 * 1024 * 1024


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


class ModelGroup:
    """The supervisor of one model: stable socket, replicas, rolling updates, scaling, status."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: Settings,
        *,
        http: httpx.AsyncClient,
        registry: OrphanRegistry,
        bus: EventSink,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self._http = http
        self._registry = registry
        self._bus = bus
        self._loop = asyncio.get_running_loop()

        self.sock: socket.socket | None = None
        self.port: int | None = spec.port
        self.replicas: list[Replica] = []
        self.desired = spec.min_replicas
        self.restarts = 0
        # The current generation's load failure (FailedToLoad), or a storage / port problem.
        self.failure: str | None = None
        self.model_path: Path | None = None
        self.closing = False
        # Scaled to zero after being Ready: KServe keeps such a model Ready (the next request wakes it).
        self._idle_ready = False
        self.last_request_at = time.monotonic()
        self.autoscaler = Autoscaler(
            scale_down_delay=settings.scale_down_delay_seconds,
            scale_to_zero_after=settings.scale_to_zero_seconds,
        )
        # Output lines per replica, numbered in arrival order so that logs() can interleave them.
        self._logs: dict[str, deque[tuple[int, str]]] = {}
        self._log_seq = itertools.count()
        self._departed: deque[str] = deque()

        self._fetching: int | None = None
        self._watching = False
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conditions: dict[str, Condition] = {}
        self._published: dict[str, Any] | None = None
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.spec.key

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.spec.min_replicas, self.spec.max_replicas, float(self.spec.scale_target))

    # -- life ---------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Bind the stable socket and begin reconciling: `max(min_replicas, 1)` replicas to start with."""
        self._bind()
        self.desired = self.bounds.floor
        self._loop_task = self._spawn_task(
            self._reconcile_loop(), f"model {self.spec.namespace}/{self.spec.name}"
        )
        self.changed()

    def _bind(self) -> None:
        try:
            self.sock = sockets.listen_stable(self.settings.host, self.spec.port)
        except OSError as exc:
            where = f"port {self.spec.port}" if self.spec.port else "a port"
            self.failure = f"cannot listen on {where} of {self.settings.host}: {exc.strerror or exc}"
            return
        self.port = sockets.port_of(self.sock)

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
            self._idle_ready = False
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
        self._unwatch()
        self._notify()
        if self._loop_task is not None:
            self._loop_task.cancel()
        await asyncio.gather(*(r.stop(self.settings.drain_timeout) for r in list(self.replicas)))
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for task in list(self._tasks):
            task.cancel()

    def remove_downloads(self) -> None:
        """Forget the model's downloaded copies (after a delete)."""
        spec = self.spec
        root = storage.download_dir(self.settings.data_dir, spec.namespace, spec.name, spec.generation).parent
        if root.is_dir():
            shutil.rmtree(root, ignore_errors=True)

    def _spawn_task(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        # Kept in a set: the loop holds only weak references to tasks.
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- reconcile --------------------------------------------------------------------------------------

    def kick(self) -> None:
        self._kick.set()

    async def _reconcile_loop(self) -> None:
        while not self.closing:
            try:
                self._reconcile()
            except Exception:  # one bad step must not stop the model's supervision
                log.exception("reconcile of %s/%s failed", *self.key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.settings.poll_interval)
            self._kick.clear()

    def _reconcile(self) -> None:
        if self.closing or self.sock is None:
            return
        gen = self.spec.generation
        live = [r for r in self.replicas if not r.stopping]
        current = [r for r in live if r.generation == gen]
        older = [r for r in live if r.generation != gen]
        if self.failure is None:
            if self.model_path is None:
                self._ensure_fetch()
            else:
                missing = self.desired - len(current)
                for _ in range(missing):
                    self._start_replica()
                if missing < 0:
                    # Scale down the least useful first: not ready, then least busy, then newest.
                    victims = sorted(
                        current, key=lambda r: (r.ready, -r.outstanding, -r.created_at.timestamp())
                    )
                    for replica in victims[:-missing]:
                        self._stop_replica(replica)
        # A rolling update: older replicas go once the new generation serves with all it needs (they
        # keep serving while the new one loads, or if it fails to load).
        if older and self.failure is None and sum(r.ready for r in current) >= self.desired:
            for replica in older:
                self._stop_replica(replica)
        self._update_watch()

    def _start_replica(self) -> None:
        assert self.sock is not None and self.model_path is not None
        spec = self.spec
        argv = [
            self.settings.python,
            "-m",
            "inferbox.server",
            "--name",
            spec.name,
            "--framework",
            spec.framework,
            "--model-dir",
            str(self.model_path),
            "--max-batch-size",
            str(self.settings.max_batch_size),
            "--max-batch-wait-ms",
            f"{self.settings.max_batch_wait_ms:g}",
            "--max-body-bytes",
            str(self.settings.max_body_bytes),
            "--parent-pid",
            str(os.getpid()),
        ]
        names = {r.name for r in self.replicas}
        name = _replica_name(spec.name)
        while name in names:
            name = _replica_name(spec.name)
        replica = Replica(
            self,
            name=name,
            generation=spec.generation,
            argv=argv,
            stable_fd=self.sock.fileno(),
            host=self.settings.host,
            http=self._http,
            registry=self._registry,
            namespace=spec.namespace,
            model=spec.name,
            stop_grace=self.settings.stop_grace,
        )
        self.replicas.append(replica)
        replica.start()

    def _stop_replica(self, replica: Replica) -> None:
        self._spawn_task(replica.stop(self.settings.drain_timeout), f"stop {replica.name}")

    def _ensure_fetch(self) -> None:
        gen = self.spec.generation
        if self._fetching == gen:
            return
        self._fetching = gen
        self._spawn_task(self._fetch(self.spec), f"fetch {self.spec.name}@{gen}")

    async def _fetch(self, spec: ModelSpec) -> None:
        dest = storage.download_dir(self.settings.data_dir, spec.namespace, spec.name, spec.generation)
        try:
            path = await storage.fetch_async(spec.storage_uri, dest)
        except Exception as exc:  # StorageError, or whatever a download library raised
            if self.spec.generation == spec.generation:
                self.failure = str(exc)
                self._fetching = None
                self.changed()
            return
        if self.spec.generation == spec.generation and not self.closing:
            self.model_path = path
            self._fetching = None
            self.kick()
            self.changed()

    # -- scale from zero ---------------------------------------------------------------------------------

    def _update_watch(self) -> None:
        """Watch the stable socket while the model has no replica wanted: a waiting connection there is
        a caller to wake the model for."""
        want = self.desired == 0 and self.sock is not None and not self.closing and self.failure is None
        if want and not self._watching:
            assert self.sock is not None
            self._loop.add_reader(self.sock.fileno(), self._on_connection_waiting)
            self._watching = True
        elif not want:
            self._unwatch()

    def _unwatch(self) -> None:
        if self._watching and self.sock is not None:
            self._loop.remove_reader(self.sock.fileno())
        self._watching = False

    def _on_connection_waiting(self) -> None:
        # Stop watching first: the connection stays queued until a replica accepts it, and a
        # level-triggered reader would fire on every loop iteration meanwhile.
        self._unwatch()
        self.activate()

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
            if self._phase() == READY:
                self._idle_ready = True
        data: dict[str, Any] = {"from": before, "to": wanted, "reason": reason}
        if demand is not None:
            data["metric"] = self.spec.scale_metric
            data["value"] = round(demand, 3)
        self._bus.publish(MODEL_SCALED, self.spec.namespace, self.spec.name, data)
        self._update_watch()

    # -- autoscaling -------------------------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """One autoscaler step: read every ready replica's stats, sample usage, decide `desired`."""
        ready = [r for r in self.replicas if r.ready]
        timeout = max(self.settings.poll_interval * 2, 1.0)
        seen = await asyncio.gather(*(r.poll_stats(now, timeout) for r in ready))
        for replica in self.replicas:
            replica.sample(now)
        if any(seen) or any(r.outstanding for r in self.replicas):
            self.last_request_at = time.monotonic()
        if self.closing or self.failure is not None or self.model_path is None:
            return
        # No decision while nothing serves yet: a model still loading has had no chance to be used,
        # and its idle window starts only once it serves.
        if self.desired > 0 and not any(r.ready and r.generation == self.spec.generation for r in ready):
            return
        metric = self.spec.scale_metric
        demand = sum(r.rps if metric == "rps" else r.concurrency for r in ready if r.ready)
        wanted = self.autoscaler.recommend(time.monotonic(), demand, self.bounds, self.last_request_at)
        if wanted != self.desired:
            reason = "ScaleToZero" if wanted == 0 else "ScaleUp" if wanted > self.desired else "ScaleDown"
            self._set_desired(wanted, reason, demand)
            self.kick()
            self.changed()

    # -- connect() ---------------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everyone waiting in `acquire` to look again."""
        self._wake.set()
        self._wake = asyncio.Event()

    def _pick(self) -> Replica | None:
        candidates = [r for r in self.replicas if r.ready and not r.stopping]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (r.outstanding, r.picks))

    async def acquire(self, timeout: float) -> Replica:
        """The ready replica with the fewest outstanding requests, held for one request; scales up
        from zero and waits (up to `timeout`) when none is ready."""
        deadline = self._loop.time() + timeout
        name = f"{self.spec.namespace}/{self.spec.name}"
        while True:
            if self.closing:
                raise ModelNotRunning(f"model {name} is being deleted", retry_after=5)
            replica = self._pick()
            if replica is not None:
                replica.hold()
                self.last_request_at = time.monotonic()
                return replica
            if self.failure is not None:
                raise ModelNotRunning(f"model {name} failed to load: {self.failure}", retry_after=30)
            self.activate()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise ModelNotRunning(
                    f"no replica of model {name} became ready within {timeout:g}s", retry_after=5
                )
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    def release(self, replica: Replica) -> None:
        replica.release()
        self.last_request_at = time.monotonic()

    # -- what replicas report -------------------------------------------------------------------------

    def replica_changed(self, replica: Replica) -> None:
        if replica.phase == CRASH_LOOP:
            self.restarts += 1
            self._idle_ready = False
        if replica.ready:
            self._idle_ready = False
            if replica.generation == self.spec.generation:
                # The idle window starts when the model can serve, not when it began loading.
                self.last_request_at = max(self.last_request_at, time.monotonic())
            self.kick()  # a rolling update may be able to proceed
        self.changed()

    def replica_output(self, replica: Replica, line: str) -> None:
        ring = self._logs.get(replica.name)
        if ring is None:
            ring = self._logs[replica.name] = deque(maxlen=self.settings.log_lines)
        ring.append((next(self._log_seq), line))

    def _forget(self, replica: Replica) -> None:
        """Drop a replica from the list; its output stays readable until a few more have left."""
        if replica in self.replicas:
            self.replicas.remove(replica)
        self._departed.append(replica.name)
        while len(self._departed) > self.settings.departed_logs:
            self._logs.pop(self._departed.popleft(), None)

    def replica_failed_to_load(self, replica: Replica, message: str) -> None:
        if replica.generation == self.spec.generation and not self.closing:
            self.failure = message
            log.warning("model %s/%s failed to load: %s", *self.key, message)
        self.changed()

    def replica_finished(self, replica: Replica) -> None:
        if replica.phase != ERROR and replica in self.replicas:
            self._forget(replica)
        if replica.generation != self.spec.generation and not any(
            r.generation == replica.generation for r in self.replicas
        ):
            self._spawn_task(self._remove_download(replica.generation))
        self.kick()
        self.changed()

    async def _remove_download(self, generation: int) -> None:
        path = storage.download_dir(self.settings.data_dir, self.spec.namespace, self.spec.name, generation)
        if path.is_dir():
            await asyncio.to_thread(shutil.rmtree, path, True)

    # -- status -----------------------------------------------------------------------------------------

    def changed(self) -> None:
        """Something observable changed: wake connect() waiters, and publish the status if it differs."""
        self._notify()
        if not self.closing:
            status = self.status()
            # Only here, on the event loop, are transition times recorded and events published:
            # status() itself only reads, since the control plane may call it from a worker thread.
            self._conditions = {c.type: c for c in status.conditions}
            self._publish(status)

    def _phase(self) -> str:
        if self.failure is not None:
            return FAILED_TO_LOAD
        if any(r.ready for r in self.replicas) or self._idle_ready:
            return READY
        if any(r.phase != TERMINATING for r in self.replicas):
            return LOADING
        return PENDING

    def _current_state(self) -> tuple[bool, str, str]:
        """(serves, reason, message) of the current generation, for the conditions."""
        gen = self.spec.generation
        current = [r for r in self.replicas if r.generation == gen and not r.stopping]
        ready = sum(r.ready for r in current)
        if self.failure is not None:
            return False, REASON_FAILED, self.failure
        if ready:
            return True, REASON_READY, "Model is ready for inference"
        if self._idle_ready and not current:
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
        if self._idle_ready:
            return True, REASON_READY, "Model is ready for inference (starting a replica for a request)"
        if self.model_path is None:
            return False, REASON_LOADING, "Fetching the model from its storageUri"
        return False, REASON_LOADING, f"Loading the model ({len(current)} replica(s) starting)"

    def _condition(self, type_: str, status: bool, reason: str, message: str) -> Condition:
        value = "True" if status else "False"
        old = self._conditions.get(type_)
        when = old.last_transition_time if old is not None and old.status == value else datetime.now(UTC)
        return Condition(type_, value, reason, message, when)

    def status(self) -> ModelStatus:
        """The observed state, KServe-style. Reads only (safe to call from a worker thread)."""
        phase = self._phase()
        ready_n = sum(r.ready for r in self.replicas)
        total = sum(r.phase != TERMINATING for r in self.replicas)
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
        if self.port is not None:
            url = f"http://{sockets.url_host(self.settings.host)}:{self.port}/v1/models/{self.spec.name}:predict"
        # A short reason while not ready, or while the latest generation is not the one serving.
        short = None if ready and serves_latest else latest_reason
        status = ModelStatus(
            phase=phase,
            ready=ready,
            url=url,
            desired=self.desired,
            ready_replicas=ready_n,
            total=total,
            conditions=conditions,
            restarts=self.restarts,
            reason=short,
            message=None if short is None else latest_message,
            port=self.port,
        )
        return status

    def _publish(self, status: ModelStatus) -> None:
        data: dict[str, Any] = {
            "phase": status.phase,
            "ready": status.ready,
            "replicas": {"desired": status.desired, "ready": status.ready_replicas, "total": status.total},
            "restarts": status.restarts,
        }
        if status.reason is not None:
            data["reason"] = status.reason
        if status.message is not None:
            data["message"] = status.message
        if data != self._published and not self.closing:
            self._published = data
            self._bus.publish(MODEL_STATUS_CHANGED, self.spec.namespace, self.spec.name, data)

    def replica_infos(self) -> list[ReplicaInfo]:
        labels = {
            "serving.kserve.io/inferenceservice": self.spec.name,
            "app": f"{self.spec.name}-predictor",
        }
        return [
            ReplicaInfo(
                name=r.name,
                namespace=self.spec.namespace,
                model=self.spec.name,
                phase=r.phase,
                ready=r.ready,
                restarts=r.restarts,
                started_at=r.created_at,
                address=r.address if r.has_process else None,
                pid=r.pid,
                cpu_millicores=r.cpu_millicores,
                memory_bytes=r.memory_bytes,
                labels=dict(labels),
            )
            for r in self.replicas
        ]

    def logs(self, lines: int, replica: str | None = None) -> list[str]:
        """The last `lines` output lines, oldest first: of one replica as they were printed, or of
        all (current and recently departed) replicas interleaved, each prefixed with `[replica]`."""
        if lines <= 0:
            return []
        if replica is not None:
            return [line for _, line in list(self._logs.get(replica, ()))[-lines:]]
        merged = sorted((seq, name, line) for name, ring in self._logs.items() for seq, line in ring)
        return [f"[{name}] {line}" for _, name, line in merged[-lines:]]
