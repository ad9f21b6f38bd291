"""An in-process cache of one kind of object, fed by list + watch (what client-go calls an informer).

`GET /api/models` is answered from here, never with a list per request. The loop lists once (keeping
the list's resourceVersion), then watches from that version, moving the version forward with every
event. A dropped watch resumes from the last version seen; a 410 Gone (the version was compacted away)
relists, replacing the cache whole and reporting what disappeared meanwhile as deletions. While the API
server cannot be reached the cache keeps what it last knew, `healthy` turns False (the runtime answers
503 for writes) and the loop retries with a capped backoff, so the cache recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

log = logging.getLogger("inferbox.kubernetes")

Key = tuple[str, str]  # (namespace, name)
Listener = Callable[[str, dict[str, Any]], None]  # ("ADDED" | "MODIFIED" | "DELETED", object)


def as_dict(item: Any) -> dict[str, Any]:
    """A lightkube object (typed or generic) as the plain dict the API server sent."""
    out: dict[str, Any] = item.to_dict() if hasattr(item, "to_dict") else dict(item)
    return out


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Informer:
    """Keeps `objects` in step with the cluster for one resource (all namespaces, one label selector)."""

    def __init__(
        self,
        client: AsyncClient,
        resource: Any,
        labels: dict[str, Any] | None,
        *,
        namespaced: bool = True,
        watch_timeout: int = 300,
        max_backoff: float = 5.0,
    ) -> None:
        self.client = client
        self.resource = resource
        self.labels = labels
        # "*": every namespace; None for a cluster-scoped kind (nodes).
        self._namespace = "*" if namespaced else None
        self.objects: dict[Key, dict[str, Any]] = {}
        self.listeners: list[Listener] = []
        self.healthy = False
        self.resource_version: str | None = None
        self.relists = 0
        self._watch_timeout = watch_timeout
        self._max_backoff = max_backoff
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer {self.resource}")

    async def wait_synced(self, timeout: float) -> bool:
        """True once the first list has landed (False after `timeout`: the cluster is not answering)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    # -- the loop ----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status.code == 410:
                    log.info("watch of %s expired (410): relisting", self._kind)
                    self.resource_version = None
                    continue
                self._unhealthy(exc)
            except (httpx2.HTTPError, OSError) as exc:
                self._unhealthy(exc)
            except Exception:  # a bug, not an outage: keep the cache alive and say so
                log.exception("informer of %s failed", self._kind)
                self._unhealthy(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    @property
    def _kind(self) -> str:
        return str(getattr(self.resource, "__name__", self.resource))

    def _unhealthy(self, exc: BaseException | None) -> None:
        if self.healthy:
            log.warning("lost the Kubernetes API while watching %s: %r", self._kind, exc)
        self.healthy = False

    async def _list(self) -> None:
        listing = self.client.list(self.resource, namespace=self._namespace, labels=self.labels)
        fresh: dict[Key, dict[str, Any]] = {}
        async for item in listing:
            obj = as_dict(item)
            fresh[key_of(obj)] = obj
        self.resource_version = listing.resourceVersion
        old, self.objects = self.objects, fresh
        self.relists += 1
        self.healthy = True
        self._synced.set()
        # Relisting after a gap: what vanished meanwhile was deleted, what changed was modified.
        for key, obj in old.items():
            if key not in fresh:
                self._tell("DELETED", obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._tell("ADDED", obj)
            elif before.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._tell("MODIFIED", obj)

    async def _watch(self) -> None:
        stream = self.client.watch(
            self.resource,
            namespace=self._namespace,
            labels=self.labels,
            resource_version=self.resource_version,
            server_timeout=self._watch_timeout,
        )
        async for kind, item in stream:
            obj = as_dict(item)
            self.healthy = True
            version = obj.get("metadata", {}).get("resourceVersion")
            if version:
                self.resource_version = version
            key = key_of(obj)
            if kind == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            self._tell(kind, obj)

    def _tell(self, kind: str, obj: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(kind, obj)
            except Exception:
                log.exception("listener of %s failed on %s", self._kind, kind)
