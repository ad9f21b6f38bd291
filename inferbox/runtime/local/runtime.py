"""`LocalRuntime`: the embedded default backend. Model replicas are processes on this machine.

Each model gets a stable listening socket that the runtime binds once (the port is reported in
`status().port` and kept by the control plane, so the model's URL survives restarts of inferbox) and
that every replica inherits and accepts on; the kernel spreads direct callers over the replicas, and a
caller of a model scaled to zero waits in the listen queue while a replica starts. `connect()` routes
single requests to the least busy ready replica through each replica's own port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from inferbox import storage
from inferbox.blocking import in_thread
from inferbox.runtime.base import (
    EventSink,
    ModelNotRunning,
    ModelSpec,
    ModelStatus,
    NodeInfo,
    ReplicaInfo,
    SpecRefused,
)
from inferbox.runtime.client import ReplicaUnreachable
from inferbox.runtime.local.lock import DataDirLock
from inferbox.runtime.local.node import node_info
from inferbox.runtime.local.orphans import OrphanRegistry
from inferbox.runtime.local.slots import ReplicaSlots
from inferbox.runtime.local.supervisor import ModelGroup, RuntimeSettings, check_spec

log = logging.getLogger(__name__)


class LocalRuntime:
    """The `Runtime` of one machine. Everything runs on the control plane's event loop: call `start()`
    and `close()` from the app's lifespan, the rest from request handlers."""

    name = "local"

    def __init__(self, data_dir: Path, events: EventSink, settings: RuntimeSettings | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.events = events
        self.settings = settings or RuntimeSettings()
        self.registry = OrphanRegistry(self.data_dir / "run")
        # One count for the machine: every model's replicas share it.
        self.slots = ReplicaSlots(self.settings.replica_slots)
        self._lock = DataDirLock(self.data_dir)
        self._groups: dict[tuple[str, str], ModelGroup] = {}
        self._http: httpx.AsyncClient | None = None
        self._poller: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- life ---------------------------------------------------------------------------------------------

    async def start(self, specs: list[ModelSpec]) -> None:
        """Reap replicas a crashed predecessor left running, then bring every given model back to its
        desired replicas on its recorded port. A model that cannot come back (its storage is gone, its
        port is taken) shows FailedToLoad instead of failing the start."""
        await self._ensure_started()
        for spec in specs:
            try:
                await self.apply(spec)
            except SpecRefused as exc:
                log.error("model %s/%s cannot be started: %s", spec.namespace, spec.name, exc)
                group = self._groups.get(spec.key)
                if group is None:
                    group = self._new_group(spec)
                group.failure = str(exc)
                group.changed()

    def claim(self) -> None:
        """Take the data dir's owner lock (RuntimeLocked when another runtime holds it). `start()`
        claims it too; calling it first lets a second `inferbox serve` fail before it serves."""
        self._lock.acquire()

    def unclaim(self) -> None:
        """Give the lock back without having started (`close()` gives it back after a start)."""
        self._lock.release()

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self._closed:
            raise RuntimeError("the local runtime is closed")
        # Before the reaper: the records under the data dir are ours only while we hold its lock.
        self.claim()
        self._started = True
        killed = await in_thread(self.registry.reap)
        if killed:
            log.warning("reaped %d orphaned replica process(es)", len(killed))
        # trust_env=False: a proxy from the environment must never sit between us and our replicas.
        self._http = httpx.AsyncClient(
            trust_env=False,
            timeout=httpx.Timeout(2.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop(), name="local-runtime poller")

    async def close(self) -> None:
        """Drain and stop every replica, close the stable sockets and stop background work."""
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        groups = list(self._groups.values())
        self._groups.clear()
        await asyncio.gather(*(g.close() for g in groups), return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        self._lock.release()

    async def _poll_loop(self) -> None:
        interval = self.settings.poll_seconds
        while True:
            began = time.monotonic()
            groups = list(self._groups.values())
            results = await asyncio.gather(*(g.tick(began) for g in groups), return_exceptions=True)
            for group, result in zip(groups, results, strict=True):
                if isinstance(result, Exception):
                    log.error("autoscaler step of %s/%s failed: %r", *group.spec.key, result)
            await asyncio.sleep(max(interval - (time.monotonic() - began), 0.01))

    # -- models ------------------------------------------------------------------------------------------

    def _new_group(self, spec: ModelSpec) -> ModelGroup:
        assert self._http is not None
        group = ModelGroup(
            spec,
            self.settings,
            data_dir=self.data_dir,
            http=self._http,
            registry=self.registry,
            bus=self.events,
            slots=self.slots,
        )
        self._groups[spec.key] = group
        group.open()
        return group

    def check(self, spec: ModelSpec) -> None:
        check_spec(spec)

    async def apply(self, spec: ModelSpec) -> ModelStatus:
        """Create or update a model; replicas start in the background. Raises SpecRefused for a spec the
        local runtime cannot run (cpu/memory metrics, bad bounds, an unusable storageUri)."""
        check_spec(spec)
        try:
            storage.validate(spec.storage_uri)
        except storage.StorageError as exc:
            raise SpecRefused(str(exc)) from None
        await self._ensure_started()
        group = self._groups.get(spec.key)
        if group is None:
            group = self._new_group(spec)
        else:
            group.update(spec)
        return group.status()

    async def delete(self, namespace: str, name: str) -> None:
        group = self._groups.pop((namespace, name), None)
        if group is None:
            return
        await group.close()
        await in_thread(group.downloads.remove_all)

    def status(self, namespace: str, name: str) -> ModelStatus | None:
        group = self._groups.get((namespace, name))
        return None if group is None else group.status()

    @contextlib.asynccontextmanager
    async def connect(self, namespace: str, name: str, timeout: float) -> AsyncIterator[str]:
        """Hold the least busy ready replica for one request and yield its base URL; waits up to
        `timeout` seconds (scaling up from zero) and raises ModelNotRunning when none comes."""
        group = self._groups.get((namespace, name))
        if group is None or self._closed:
            raise ModelNotRunning(f"model {namespace}/{name} is not deployed", retry_after=30)
        replica = await group.router.acquire(timeout)
        try:
            yield replica.base_url
        except ReplicaUnreachable:
            # Most likely dead: the caller's retry (ReplicaClient.call) waits for another replica, or
            # for this one's restart, instead of being sent to it again.
            replica.suspect()
            raise
        finally:
            group.router.release(replica)

    async def logs(self, namespace: str, name: str, lines: int, replica: str | None = None) -> list[str]:
        """The model's last output lines, oldest first, each prefixed with `[replica-name]`; with
        `replica`, that replica's lines only and without the prefix (as `kubectl logs POD`)."""
        group = self._groups.get((namespace, name))
        return [] if group is None else group.log_rings.read(lines, replica)

    def replicas(self, namespace: str | None = None) -> list[ReplicaInfo]:
        out: list[ReplicaInfo] = []
        for (ns, _), group in sorted(self._groups.items()):
            if namespace is None or ns == namespace:
                out.extend(group.reporter.replica_infos())
        return out

    def nodes(self) -> list[NodeInfo]:
        return [node_info(self.settings.replica_host)]
