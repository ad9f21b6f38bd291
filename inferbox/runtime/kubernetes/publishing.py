"""Publications as Gateway API objects: one HTTPRoute per publication (plus, in `envoy` mode, a
SecurityPolicy and a BackendTrafficPolicy), reconciled from the store after every publishing change.

The store is the source of truth, as for models: `sync()` computes the objects every publication calls
for, creates or merge-patches them, and deletes the managed ones no publication calls for any more
(unpublished, or their model deleted). Each set is owned by its model's InferenceService, so deleting
the model lets the garbage collector take the set even if inferbox is not running. A set that fails
midway is taken back out (no partial sets: a route without its SecurityPolicy would be an open door in
envoy mode) and retried at the next sync.

Data planes (`INFERBOX_K8S_DATAPLANE`):
- `inferbox`: the route points at the inferbox gateway's Service, which does keys, limits, usage and
  tokens exactly as on one machine (its replicas share Redis).
- `envoy`: the route points at the predictor's Service, rewriting to the model's own paths; Envoy calls
  `/api/validate-api-key` (extAuth) and counts requests per key (global rate limits). What it cannot do
  is in docs/kubernetes.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from inferbox.blocking import in_thread
from inferbox.runtime.kubernetes import manifests as m
from inferbox.runtime.kubernetes.cache import as_dict
from inferbox.runtime.kubernetes.runtime import (
    KINDS,
    UNREACHABLE,
    KubernetesRuntime,
    ReferenceGrant,
    contains,
)
from inferbox.store import Store
from inferbox.store.tables import Publication as PublicationRow

log = logging.getLogger("inferbox.kubernetes")

SET_KINDS = ("HTTPRoute", "SecurityPolicy", "BackendTrafficPolicy")


def stored_publications(store: Store) -> list[m.Publication]:
    """Every publication, as the Gateway API objects need it. Blocking."""
    with store.session() as session:
        rows = session.scalars(select(PublicationRow).options(selectinload(PublicationRow.model))).all()
        out = []
        for row in rows:
            limits = row.rate_limiting or {}
            out.append(
                m.Publication(
                    tenant=row.model.namespace,
                    model=row.model.name,
                    external_path=row.external_path,
                    public_hostname=row.public_hostname,
                    burst_limit=limits.get("burstLimit", 10),
                    requests_per_minute=limits.get("requestsPerMinute", 100),
                    requests_per_hour=limits.get("requestsPerHour", 5000),
                )
            )
        return out


class GatewayPublisher:
    def __init__(
        self,
        runtime: KubernetesRuntime,
        publications: Callable[[], list[m.Publication]],
        *,
        dataplane: str,
        gateway: str,
        gateway_service: str,
        control_service: str,
    ) -> None:
        self.runtime = runtime
        self.publications = publications
        self.dataplane = dataplane
        ns, _, name = gateway.partition("/")
        self.gateway = (ns, name)
        self.gateway_service = m.ServiceRef.parse(gateway_service)
        self.control_service = m.ServiceRef.parse(control_service)
        self._lock = asyncio.Lock()
        self._observed: dict[tuple[str, str, str], dict[str, Any]] = {}

    def objects(self, pub: m.Publication, owner: dict[str, Any]) -> list[dict[str, Any]]:
        """The set one publication calls for, in creation order (the route last: it opens the door)."""
        if self.dataplane == "envoy":
            backend = m.ServiceRef(pub.tenant, f"{pub.model}-predictor", 80)
            route = m.http_route(pub, gateway=self.gateway, backend=backend, direct=True, owner=owner)
            security = m.security_policy(pub, auth=self.control_service, owner=owner)
            traffic = m.backend_traffic_policy(pub, owner=owner)
            return [security, *([traffic] if traffic else []), route]
        backend = self.gateway_service
        return [m.http_route(pub, gateway=self.gateway, backend=backend, direct=False, owner=owner)]

    def grant(self, tenant: str) -> dict[str, Any]:
        services = [self.gateway_service] if self.dataplane == "inferbox" else [self.control_service]
        return m.reference_grant(tenant, services)

    def sync_blocking(self) -> None:
        """The publishing listener (called in a worker thread after a change): sync now, and wait a
        little for it; a failure is logged and retried by the resync."""
        try:
            self.runtime.run_blocking(self.sync(), timeout=15.0)
        except Exception as exc:
            log.warning("Gateway API sync failed (retried at the next resync): %r", exc)

    async def sync(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        client = self.runtime.client
        assert client is not None
        wanted = await in_thread(self.publications)
        # What exists now, so that a sync writes only what differs (one publish among many publications
        # costs a few list calls and its own writes, not a patch of every set).
        observed: dict[tuple[str, str, str], dict[str, Any]] = {}
        for kind in (*SET_KINDS, "ReferenceGrant"):
            async for item in client.list(KINDS[kind], namespace="*", labels={m.MANAGED_BY: m.MANAGER}):
                obj = as_dict(item)
                meta = obj.get("metadata") or {}
                observed[(kind, meta.get("namespace") or "", meta.get("name") or "")] = obj
        self._observed = observed
        keep: set[tuple[str, str, str]] = set()
        errors: list[BaseException] = []
        for pub in wanted:
            owner = await self.runtime.inference_service(pub.tenant, pub.model)
            if owner is None:
                continue  # the model is not in the cluster (yet): the next sync makes the set
            objs = self.objects(pub, owner)
            keep.update((o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs)
            try:
                # The tenant's grant first, alone: other publications of the tenant share it.
                await self._apply_set([self.grant(pub.tenant)])
                await self._apply_set(objs)
            except (ApiError, *UNREACHABLE) as exc:
                errors.append(exc)
        for kind, ns, name in observed:
            if kind in SET_KINDS and (kind, ns, name) not in keep:
                await self._delete(kind, ns, name)
        if errors:
            raise errors[0]

    async def _apply_set(self, objs: list[dict[str, Any]]) -> None:
        """Create or patch every object of a set; a failure takes back what this call created."""
        client = self.runtime.client
        assert client is not None
        made: list[dict[str, Any]] = []
        try:
            for obj in objs:
                res = KINDS[obj["kind"]]
                meta = obj["metadata"]
                before = self._observed.get((obj["kind"], meta["namespace"], meta["name"]))
                if (
                    before is not None
                    and before.get("spec") == obj["spec"]
                    and contains(before.get("metadata", {}).get("labels") or {}, meta["labels"])
                ):
                    continue  # already as wanted
                try:
                    await client.create(res.from_dict(obj))
                    made.append(obj)
                except ApiError as exc:
                    if exc.status.code != 409:
                        raise
                    # A merge patch keeps keys it does not name: those the set no longer has are nulled
                    # (a publicHostname taken away takes the route's hostnames with it).
                    spec = dict(obj["spec"])
                    for key in (before or {}).get("spec") or {}:
                        spec.setdefault(key, None)
                    patch = {"metadata": {"labels": meta["labels"]}, "spec": spec}
                    await client.patch(
                        res, meta["name"], patch, namespace=meta["namespace"], patch_type=PatchType.MERGE
                    )
        except BaseException:
            for obj in reversed(made):
                try:
                    await self._delete(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
                except (ApiError, *UNREACHABLE) as exc:
                    log.warning("cannot take back %s %s: %r", obj["kind"], obj["metadata"]["name"], exc)
            raise

    async def _delete(self, kind: str, namespace: str, name: str) -> None:
        client = self.runtime.client
        assert client is not None
        try:
            await client.delete(KINDS[kind], name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def forget_tenant(self, tenant: str) -> None:
        """A tenant is gone: its ReferenceGrant in inferbox's namespace (the rest went with its namespace)."""
        grant = self.grant(tenant)
        client = self.runtime.client
        assert client is not None
        try:
            await client.delete(
                ReferenceGrant, grant["metadata"]["name"], namespace=grant["metadata"]["namespace"]
            )
        except ApiError as exc:
            if exc.status.code != 404:
                raise
