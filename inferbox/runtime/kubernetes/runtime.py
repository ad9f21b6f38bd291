"""`KubernetesRuntime`: models as KServe InferenceServices, tenants as namespaces, status from watches.

The client is lightkube's `AsyncClient`, on the control plane's event loop: typed, small, async
throughout (the official `kubernetes` client is synchronous, and `kubernetes-asyncio` is a generated
copy of it that still wants its own models), and its generic resources cover KServe's and the Gateway
API's CRDs without generated code.

Writes are JSON merge patches of the whole `spec` inferbox owns, not server-side apply: the store is the
source of truth for what users asked for and inferbox is the only writer of these fields, so the field
managers of SSA would record one owner and add nothing but a conflict mode we never want. Reconciling is
level-triggered: at start, after every change, and whenever the watch shows an InferenceService deleted
or changed behind inferbox's back, the cluster is put back to the store's spec (a deleted one is
recreated, and a `model.statusChanged` event with reason `Recreated` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.operators import exists
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Pod, Service
from lightkube.types import PatchType

from inferbox import storage
from inferbox.runtime.base import (
    FAILED_TO_LOAD,
    MODEL_STATUS_CHANGED,
    EventSink,
    ModelNotRunning,
    ModelSpec,
    ModelStatus,
    NodeInfo,
    ReplicaInfo,
    RuntimeUnavailable,
    SpecRefused,
)
from inferbox.runtime.kubernetes import manifests as m
from inferbox.runtime.kubernetes.cache import Informer, as_dict
from inferbox.runtime.kubernetes.status import address, model_status

log = logging.getLogger("inferbox.kubernetes")

InferenceService = create_namespaced_resource(
    "serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices"
)
ClusterServingRuntime = create_global_resource(
    "serving.kserve.io", "v1alpha1", "ClusterServingRuntime", "clusterservingruntimes"
)
ServingRuntime = create_namespaced_resource(
    "serving.kserve.io", "v1alpha1", "ServingRuntime", "servingruntimes"
)
HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
Gateway = create_namespaced_resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways")
ReferenceGrant = create_namespaced_resource(
    "gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants"
)
SecurityPolicy = create_namespaced_resource(
    "gateway.envoyproxy.io", "v1alpha1", "SecurityPolicy", "securitypolicies"
)
BackendTrafficPolicy = create_namespaced_resource(
    "gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy", "backendtrafficpolicies"
)
KINDS: dict[str, Any] = {
    "InferenceService": InferenceService,
    "HTTPRoute": HTTPRoute,
    "SecurityPolicy": SecurityPolicy,
    "BackendTrafficPolicy": BackendTrafficPolicy,
    "ReferenceGrant": ReferenceGrant,
    "Namespace": Namespace,
}
PREDICTOR_CONTAINER = "kserve-container"
SYNC_TIMEOUT_SECONDS = 10.0
# Errors that mean "the API server did not answer" rather than "it refused".
UNREACHABLE = (httpx2.TransportError, OSError)


@dataclass(frozen=True)
class KubernetesSettings:
    kubeconfig: str | None = None
    # How long a start waits for the first lists before it serves (the cache may fill later).
    sync_timeout: float = SYNC_TIMEOUT_SECONDS
    # The period of the full resync (drift of objects no watch event names, retries of failed syncs).
    resync_seconds: float = 30.0


def _is(exc: BaseException, code: int) -> bool:
    return isinstance(exc, ApiError) and exc.status.code == code


def unavailable(exc: BaseException) -> RuntimeUnavailable:
    if isinstance(exc, ApiError):
        return RuntimeUnavailable(f"the Kubernetes API answered {exc.status.code}: {exc.status.message}")
    return RuntimeUnavailable(f"the Kubernetes API cannot be reached ({type(exc).__name__})")


def contains(observed: Any, desired: Any) -> bool:
    """`desired` is a part of `observed` (the API server may add defaults, never change ours)."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(contains(observed.get(k), v) for k, v in desired.items())
    return bool(observed == desired)


class KubernetesRuntime:
    """The `Runtime` of a cluster with KServe. Call `start()` and `close()` from the app's lifespan."""

    name = "kubernetes"

    def __init__(self, events: EventSink, settings: KubernetesSettings | None = None) -> None:
        self.events = events
        self.settings = settings or KubernetesSettings()
        self.client: AsyncClient | None = None
        self._desired: dict[tuple[str, str], ModelSpec] = {}
        self._namespaces: set[str] = set()
        self._published: dict[tuple[str, str], dict[str, Any]] = {}
        self._statuses: dict[tuple[str, str], tuple[tuple[Any, ...], ModelStatus]] = {}
        self._deployment_of: dict[tuple[str, str], tuple[str, str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resync: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self.isvcs: Informer | None = None
        self.deployments: Informer | None = None
        self.pods: Informer | None = None
        self.nodes_cache: Informer | None = None
        # Run after every reconcile (the Gateway API publisher's sync).
        self.after_reconcile: list[Callable[[], Awaitable[None]]] = []

    # -- life --------------------------------------------------------------------------------------------
    def _config(self) -> KubeConfig:
        if self.settings.kubeconfig:
            return KubeConfig.from_file(self.settings.kubeconfig)
        return KubeConfig.from_service_account()

    async def start(self, specs: list[ModelSpec]) -> None:
        self._loop = asyncio.get_running_loop()
        self.client = AsyncClient(self._config(), field_manager="inferbox")
        managed = {m.MANAGED_BY: m.MANAGER}
        predictors = {m.ISVC_LABEL: exists()}
        self.isvcs = Informer(self.client, InferenceService, managed)
        self.deployments = Informer(self.client, Deployment, predictors)
        self.pods = Informer(self.client, Pod, predictors)
        self.nodes_cache = Informer(self.client, Node, None, namespaced=False)
        for informer in (self.isvcs, self.deployments, self.pods, self.nodes_cache):
            informer.start()
        self.isvcs.listeners.append(self._on_isvc)
        self.deployments.listeners.append(self._on_deployment)
        self._desired = {s.key: s for s in specs}
        if not await self.isvcs.wait_synced(self.settings.sync_timeout):
            log.error(
                "the Kubernetes API did not answer within %gs; serving from the store",
                self.settings.sync_timeout,
            )
        await self.reconcile()
        self._resync = self._loop.create_task(self._resync_loop(), name="kubernetes resync")

    async def close(self) -> None:
        for task in [self._resync, *self._pending]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for informer in (self.isvcs, self.deployments, self.pods, self.nodes_cache):
            if informer is not None:
                await informer.close()
        if self.client is not None:
            await self.client.close()

    @property
    def healthy(self) -> bool:
        return self.isvcs is not None and self.isvcs.healthy

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            await self.reconcile()

    async def reconcile(self) -> None:
        """Put every desired model back to its spec, and delete the InferenceServices inferbox made for
        models the store no longer has; failures are logged and retried at the next resync."""
        assert self.client is not None and self.isvcs is not None
        for spec in list(self._desired.values()):
            try:
                await self._ensure(spec)
            except (ApiError, *UNREACHABLE) as exc:
                log.warning("cannot reconcile %s/%s: %r", spec.namespace, spec.name, exc)
        for hook in self.after_reconcile:
            try:
                await hook()
            except (ApiError, *UNREACHABLE) as exc:
                log.warning("reconcile hook failed (retried at the next resync): %r", exc)
        if not self.isvcs.healthy:
            return
        for key in [k for k in self.isvcs.objects if k not in self._desired]:
            try:
                await self.client.delete(InferenceService, key[1], namespace=key[0])
            except (ApiError, *UNREACHABLE) as exc:
                if not _is(exc, 404):
                    log.warning("cannot delete the orphan %s/%s: %r", *key, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- tenants -----------------------------------------------------------------------------------------
    async def ensure_namespace(self, tenant: str) -> None:
        """The tenant's namespace, made (and marked as made by inferbox) or labelled as a tenant."""
        assert self.client is not None
        if tenant in self._namespaces:
            return
        try:
            ns = await self.client.get(Namespace, tenant)
        except ApiError as exc:
            if not _is(exc, 404):
                raise
            try:
                made = m.namespace(tenant, created=True)["metadata"]
                await self.client.create(Namespace(metadata=ObjectMeta(name=tenant, labels=made["labels"])))
            except ApiError as again:
                if not _is(again, 409):
                    raise
        else:
            have = (ns.metadata.labels if ns.metadata else None) or {}
            wanted = m.labels(tenant)
            if any(have.get(k) != v for k, v in wanted.items()):
                await self.client.patch(
                    Namespace, tenant, {"metadata": {"labels": wanted}}, patch_type=PatchType.MERGE
                )
        self._namespaces.add(tenant)

    async def remove_namespace(self, tenant: str) -> None:
        """Undo `ensure_namespace`: delete a namespace inferbox made, unlabel one it found."""
        assert self.client is not None
        self._namespaces.discard(tenant)
        try:
            ns = await self.client.get(Namespace, tenant)
        except ApiError as exc:
            if _is(exc, 404):
                return
            raise
        have = (ns.metadata.labels if ns.metadata else None) or {}
        if have.get(m.MANAGED_BY) != m.MANAGER:
            return
        if have.get(m.CREATED_LABEL) == "true":
            await self.client.delete(Namespace, tenant)
        else:
            unlabel = {k: None for k in (m.MANAGED_BY, m.TENANT_LABEL)}
            await self.client.patch(
                Namespace, tenant, {"metadata": {"labels": unlabel}}, patch_type=PatchType.MERGE
            )

    # -- models ------------------------------------------------------------------------------------------
    def check(self, spec: ModelSpec) -> None:
        if spec.scale_metric not in m.SCALE_METRICS:
            raise SpecRefused(f"Field 'scaleMetric' must be one of {', '.join(m.SCALE_METRICS)}")
        if storage.is_local(spec.storage_uri):
            raise SpecRefused(
                "Field 'storageUri': a local path does not exist inside the cluster; "
                "use pvc://, s3://, gs://, hf:// or http(s)://"
            )

    async def apply(self, spec: ModelSpec) -> ModelStatus:
        self.check(spec)
        self._desired[spec.key] = spec
        try:
            await self._ensure(spec)
        except (ApiError, *UNREACHABLE) as exc:
            raise unavailable(exc) from None
        return self.status(spec.namespace, spec.name) or model_status(None, None, spec.min_replicas)

    async def _ensure(self, spec: ModelSpec) -> dict[str, Any]:
        """Create the InferenceService, or merge-patch it back to `spec` when it differs."""
        assert self.client is not None and self.isvcs is not None
        await self.ensure_namespace(spec.namespace)
        desired = m.inference_service(spec)
        observed = self.isvcs.get(spec.namespace, spec.name)
        owned = {
            "metadata": {k: desired["metadata"][k] for k in ("labels", "annotations")},
            "spec": desired["spec"],
        }
        if observed is not None and contains(observed, owned):
            return observed
        try:
            created = await self.client.create(InferenceService.from_dict(desired))
            return as_dict(created)
        except ApiError as exc:
            if not _is(exc, 409):
                raise
        patched = await self.client.patch(
            InferenceService, spec.name, owned, namespace=spec.namespace, patch_type=PatchType.MERGE
        )
        return as_dict(patched)

    async def delete(self, namespace: str, name: str) -> None:
        """Delete the InferenceService (what it owns goes with it). The store has already forgotten the
        model, so a cluster that does not answer now is caught up by the next reconcile instead."""
        assert self.client is not None
        self._desired.pop((namespace, name), None)
        self._published.pop((namespace, name), None)
        self._statuses.pop((namespace, name), None)
        try:
            await self.client.delete(InferenceService, name, namespace=namespace)
        except ApiError as exc:
            if not _is(exc, 404):
                log.warning("cannot delete %s/%s now (retried at the next resync): %r", namespace, name, exc)
        except UNREACHABLE as exc:
            log.warning("cannot delete %s/%s now (retried at the next resync): %r", namespace, name, exc)

    def _deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.deployments is None:
            return None
        # KServe's raw mode names it {name}-predictor; serverless mode adds a revision, found by label.
        found = self.deployments.get(namespace, f"{name}-predictor")
        if found is None and (namespace, name) in self._deployment_of:
            found = self.deployments.get(*self._deployment_of[(namespace, name)])
        return found

    def status(self, namespace: str, name: str) -> ModelStatus | None:
        spec = self._desired.get((namespace, name))
        if spec is None or self.isvcs is None:
            return None
        isvc = self.isvcs.get(namespace, name)
        deployment = self._deployment(namespace, name)
        # Mapped once per observed version: a listing of every model reads the cache, not the mapping.
        version = (_version(isvc), _version(deployment), spec.min_replicas)
        cached = self._statuses.get((namespace, name))
        if cached is not None and cached[0] == version:
            return cached[1]
        status = model_status(isvc, deployment, spec.min_replicas)
        self._statuses[(namespace, name)] = (version, status)
        return status

    def _announce(self, namespace: str, name: str, extra: dict[str, Any] | None = None) -> None:
        status = self.status(namespace, name)
        if status is None:
            return
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
        data.update(extra or {})
        if self._published.get((namespace, name)) != data:
            self._published[(namespace, name)] = data
            self.events.publish(MODEL_STATUS_CHANGED, namespace, name, data)

    def _on_isvc(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        spec = self._desired.get(key)
        if spec is None:
            return
        if kind == "DELETED":
            log.warning("InferenceService %s/%s was deleted behind inferbox's back: recreating", *key)
            self._announce(*key, {"reason": "Recreated", "message": "deleted outside inferbox; recreated"})
            self._spawn(self._recreate(spec))
            return
        if not contains(obj.get("spec"), m.inference_service_spec(spec)):
            log.warning("InferenceService %s/%s drifted from its spec: patching it back", *key)
            self._spawn(self._recreate(spec))
        self._announce(*key)

    def _on_deployment(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(m.ISVC_LABEL)
        if name:
            model = (meta.get("namespace") or "", name)
            if kind == "DELETED":
                self._deployment_of.pop(model, None)
            else:
                self._deployment_of[model] = (model[0], meta.get("name") or "")
            self._announce(meta.get("namespace") or "", name)

    async def _recreate(self, spec: ModelSpec) -> None:
        if self._desired.get(spec.key) != spec:
            return
        try:
            await self._ensure(spec)
        except (ApiError, *UNREACHABLE) as exc:
            log.warning(
                "cannot recreate %s/%s (retried at the next resync): %r", spec.namespace, spec.name, exc
            )

    @contextlib.asynccontextmanager
    async def connect(self, namespace: str, name: str, timeout: float) -> AsyncIterator[str]:
        """The InferenceService's address, once it is Ready (waits up to `timeout` on the watch)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = self.status(namespace, name)
            if status is None:
                raise ModelNotRunning(f"model {namespace}/{name} is not deployed", retry_after=30)
            isvc = self.isvcs.get(namespace, name) if self.isvcs else None
            base = address(isvc) if isvc else None
            if status.ready and base:
                break
            if status.phase == FAILED_TO_LOAD:
                raise ModelNotRunning(f"model {namespace}/{name} failed to load: {status.message}")
            if loop.time() >= deadline:
                raise ModelNotRunning(f"model {namespace}/{name} is not ready ({status.phase})")
            await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0)))
        yield base

    async def logs(self, namespace: str, name: str, lines: int) -> list[str]:
        """The last lines of the predictor pods' `kserve-container`, each prefixed with `[pod]`."""
        assert self.client is not None
        out: list[str] = []
        for pod in self._pods(namespace, name):
            try:
                async for line in self.client.log(
                    pod.name, namespace=namespace, container=PREDICTOR_CONTAINER, tail_lines=lines
                ):
                    out.append(f"[{pod.name}] {line.rstrip()}")
            except ApiError as exc:
                out.append(f"[{pod.name}] (no logs: {exc.status.message})")
            except UNREACHABLE as exc:
                raise unavailable(exc) from None
        return out[-lines:] if lines else out

    def _pods(self, namespace: str | None, model: str | None = None) -> list[ReplicaInfo]:
        if self.pods is None:
            return []
        out = []
        for (ns, pod_name), pod in sorted(self.pods.objects.items()):
            labels = (pod.get("metadata") or {}).get("labels") or {}
            owner = labels.get(m.ISVC_LABEL, "")
            if (namespace is not None and ns != namespace) or (model is not None and owner != model):
                continue
            status = pod.get("status") or {}
            containers = status.get("containerStatuses") or []
            ready = bool(containers) and all(c.get("ready") for c in containers)
            started = status.get("startTime") or (pod.get("metadata") or {}).get("creationTimestamp")
            out.append(
                ReplicaInfo(
                    name=pod_name,
                    namespace=ns,
                    model=owner,
                    phase=str(status.get("phase") or "Pending"),
                    ready=ready,
                    restarts=sum(int(c.get("restartCount") or 0) for c in containers),
                    started_at=_time(started),
                    address=status.get("podIP"),
                    labels=dict(labels),
                )
            )
        return out

    def replicas(self, namespace: str | None = None) -> list[ReplicaInfo]:
        return self._pods(namespace)

    def nodes(self) -> list[NodeInfo]:
        if self.nodes_cache is None:
            return []
        out = []
        for (_, name), node in sorted(self.nodes_cache.objects.items()):
            status = node.get("status") or {}
            conds = status.get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
            capacity = status.get("capacity") or {}
            allocatable = status.get("allocatable") or {}
            out.append(
                NodeInfo(
                    name=name,
                    status="Ready" if ready else "NotReady",
                    version=str((status.get("nodeInfo") or {}).get("kubeletVersion") or ""),
                    capacity_cpu=str(capacity.get("cpu", "")),
                    capacity_memory=str(capacity.get("memory", "")),
                    allocatable_cpu=str(allocatable.get("cpu", "")),
                    allocatable_memory=str(allocatable.get("memory", "")),
                    created=_time((node.get("metadata") or {}).get("creationTimestamp")),
                    addresses=tuple(a.get("address", "") for a in status.get("addresses") or []),
                )
            )
        return out

    # -- objects for others (publishing, admin) ----------------------------------------------------------
    async def inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceService from the cache, else from the API server (None when there is none)."""
        assert self.client is not None
        cached = self.isvcs.get(namespace, name) if self.isvcs else None
        if cached is not None and cached.get("metadata", {}).get("uid"):
            return cached
        try:
            return as_dict(await self.client.get(InferenceService, name, namespace=namespace))
        except ApiError as exc:
            if _is(exc, 404):
                return None
            raise

    async def resources(self) -> dict[str, list[dict[str, Any]]]:
        """The cluster's objects by kind for `GET /api/admin/resources` (listed live)."""
        assert self.client is not None
        kinds: dict[str, tuple[Any, bool]] = {
            "pods": (Pod, True),
            "services": (Service, True),
            "gateways": (Gateway, True),
            "httpRoutes": (HTTPRoute, True),
            "inferenceServices": (InferenceService, True),
            "servingRuntimes": (ServingRuntime, True),
            "clusterServingRuntimes": (ClusterServingRuntime, False),
        }
        out: dict[str, list[dict[str, Any]]] = {}
        for key, (res, namespaced) in kinds.items():
            items: list[dict[str, Any]] = []
            try:
                async for item in self.client.list(res, namespace="*" if namespaced else None):
                    items.append(_summary(as_dict(item)))
            except ApiError as exc:
                if not _is(exc, 404):  # 404: a CRD that is not installed, its kind simply empty
                    raise unavailable(exc) from None
            except UNREACHABLE as exc:
                raise unavailable(exc) from None
            out[key] = items
        return out

    def run_blocking(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run `coro` on the runtime's loop from a worker thread and wait for it (tenant hooks)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


def _version(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")


def _summary(obj: dict[str, Any]) -> dict[str, Any]:
    """`{name, namespace, status, created, ...}`: the status is the phase, else the Ready condition."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase is None:
        conds = status.get("conditions") or []
        ready = next((c for c in conds if c.get("type") in ("Ready", "Accepted", "Programmed")), None)
        phase = ("Ready" if ready.get("status") == "True" else "NotReady") if ready else "Unknown"
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "status": phase,
        "created": meta.get("creationTimestamp"),
        "labels": meta.get("labels") or {},
        "kind": obj.get("kind"),
    }


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return datetime.now(UTC)
