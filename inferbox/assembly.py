"""The composition root: every part of a running inferbox, built from its settings in one place.

`build` makes a control plane (`inferbox serve`), `standalone_gateway` a gateway alone (`inferbox
gateway`), `token_service` and `open_store` what the smaller commands need. The API reads the parts
from `app.state.platform`; nothing lives in module globals, so a test can build as many platforms as
it needs side by side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from inferbox.api.metrics import HttpMetrics
from inferbox.auth.tokens import TokenService
from inferbox.config import Settings, ensure_data_dir
from inferbox.control.audit import AuditLog
from inferbox.control.events import EventBus
from inferbox.control.lease import Lease
from inferbox.control.models import ModelService
from inferbox.control.predictions import Predictor
from inferbox.control.publishing import PublishingService
from inferbox.control.storage_policy import StoragePolicy
from inferbox.control.tenant_admin import TenantAdmin
from inferbox.control.tenants import TenantDirectory
from inferbox.gateway.service import GatewayService
from inferbox.gateway.upstream import DirectUpstream, RuntimeUpstream
from inferbox.health import Dependency
from inferbox.logs import RecentLines
from inferbox.ratelimit import Limiter
from inferbox.runtime import Runtime
from inferbox.runtime.local import LocalRuntime, RuntimeSettings
from inferbox.store import Store

log = logging.getLogger("inferbox")


@dataclass
class Platform:
    settings: Settings
    store: Store
    tokens: TokenService
    limiter: Limiter
    events: EventBus
    audit: AuditLog
    tenants: TenantDirectory
    tenant_admin: TenantAdmin
    metrics: HttpMetrics
    recent_logs: RecentLines
    runtime: Runtime
    models: ModelService
    predictions: Predictor
    publishing: PublishingService
    gateway: GatewayService
    # What this process last saw of the store (its outages are logged once per interval).
    store_health: Dependency
    # Held while this control plane owns the local runtime's processes (see control/lease.py).
    lease: Lease | None = None
    started_at: float = field(default_factory=time.time)


def open_store(settings: Settings) -> Store:
    """The store, its schema brought to the newest revision."""
    ensure_data_dir(settings.data_dir)
    store = Store(settings.effective_database_url)
    store.migrate()
    return store


def token_service(settings: Settings) -> TokenService:
    """Issues and verifies tokens as the settings say. `settings.jwt_secret` must be set."""
    assert settings.jwt_secret, "ensure_jwt_secret() first"
    return TokenService(
        settings.jwt_secret,
        issuer=settings.token_issuer,
        verify_issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_url=settings.jwt_jwks_url,
        admin_username=settings.admin_username,
        ttl_seconds=settings.token_ttl_seconds,
    )


def local_runtime(settings: Settings, events: EventBus) -> LocalRuntime:
    """The local runtime, with the knobs both settings name alike taken from the control plane's."""
    shared = {
        f.name: getattr(settings, f.name) for f in fields(RuntimeSettings) if f.name in Settings.model_fields
    }
    return LocalRuntime(settings.data_dir / "runtime", events, RuntimeSettings(**shared))


def standalone_gateway(settings: Settings) -> tuple[Store, GatewayService]:
    """A gateway without a runtime: it routes to the models' stable ports and fails closed when Redis
    is down (its limits are the publications' contracts)."""
    store = open_store(settings)
    gateway = GatewayService(
        store,
        Limiter(settings.redis_url, prefix=settings.redis_prefix),
        token_service(settings),
        TenantDirectory(store),
        DirectUpstream(),
        settings=settings,
    )
    return store, gateway


def kubernetes_runtime(settings: Settings, events: EventBus) -> Runtime:
    from inferbox.runtime.kubernetes import KubernetesRuntime, KubernetesSettings

    return KubernetesRuntime(events, KubernetesSettings(kubeconfig=settings.kubeconfig))


def wire_kubernetes(
    settings: Settings,
    store: Store,
    runtime: Runtime,
    publishing: PublishingService,
    tenant_admin: TenantAdmin,
) -> None:
    """Publications become Gateway API objects, tenants namespaces (see runtime/kubernetes/)."""
    from inferbox.runtime.kubernetes import KubernetesRuntime
    from inferbox.runtime.kubernetes.publishing import GatewayPublisher, stored_publications

    assert isinstance(runtime, KubernetesRuntime)
    publisher = GatewayPublisher(
        runtime,
        lambda: stored_publications(store),
        dataplane=settings.k8s_dataplane,
        gateway=settings.k8s_gateway,
        gateway_service=settings.k8s_gateway_service,
        control_service=settings.k8s_control_service,
    )
    publishing.listeners.append(publisher.sync_blocking)
    runtime.after_reconcile.append(publisher.sync)

    async def removed(name: str) -> None:
        await publisher.forget_tenant(name)
        await runtime.remove_namespace(name)

    def hook(what: str, make: Callable[[str], Any]) -> Callable[[str], None]:
        """A tenant hook that never fails the tenant's change: the store is the truth, and a namespace
        the cluster could not make now is made with the tenant's first model (or by the admin)."""

        def run(name: str) -> None:
            try:
                runtime.run_blocking(make(name))
            except Exception as exc:
                log.warning("could not %s the namespace of tenant %s: %r", what, name, exc)

        return run

    tenant_admin.on_created.append(hook("make", runtime.ensure_namespace))
    tenant_admin.on_deleted.append(hook("remove", removed))


def claim_runtime(store: Store, runtime: LocalRuntime) -> Lease:
    """Take the local runtime's data dir lock and its lease in the store, or neither (RuntimeLocked)."""
    lease = Lease(store, runtime.name)
    try:
        runtime.claim()
        lease.acquire()
    except BaseException:
        runtime.unclaim()
        store.close()
        raise
    return lease


def build(settings: Settings, recent_logs: RecentLines | None = None) -> Platform:
    """Open the store (running migrations) and wire the parts. `settings.jwt_secret` must be set.

    Raises RuntimeLocked when another control plane owns the local runtime of this store or data dir:
    a second one would run every model twice (see control/lease.py)."""
    tokens = token_service(settings)
    store = open_store(settings)
    events = EventBus()
    runtime: Runtime
    lease: Lease | None = None
    if settings.runtime == "kubernetes":
        # No lease: the cluster, not this process, runs the models; control planes sharing a store
        # reconcile it to the same desired state (idempotent merge patches).
        runtime = kubernetes_runtime(settings, events)
    else:
        local = local_runtime(settings, events)
        lease = claim_runtime(store, local)
        runtime = local
    store_health = Dependency("the store")
    audit = AuditLog(store, store_health)
    tenants = TenantDirectory(store)
    # The API falls back to in-process limits while Redis is down; the gateway refuses. Both share one
    # connection pool and one view of Redis's health.
    limiter = Limiter(settings.redis_url, prefix=settings.redis_prefix, fallback=True)
    publishing = PublishingService(store, events, audit, settings.public_gateway_url)
    gateway = GatewayService(
        store,
        limiter.with_fallback(False),
        tokens,
        tenants,
        RuntimeUpstream(runtime),
        settings=settings,
        store_health=store_health,
    )
    # The gateway in this process sees every change at once, not at its next reload.
    publishing.listeners.append(gateway.routes.reload)
    models = ModelService(
        store,
        runtime,
        events,
        audit,
        storage_policy=StoragePolicy(root=settings.model_root or Path.cwd(), data_dir=settings.data_dir),
        max_replicas=settings.max_replicas,
        check_storage_here=settings.runtime == "local",
    )
    models.before_delete.append(publishing.unpublish_deleted_model)
    tenant_admin = TenantAdmin(tenants, audit, models)
    if settings.runtime == "kubernetes":
        wire_kubernetes(settings, store, runtime, publishing, tenant_admin)
    return Platform(
        settings=settings,
        store=store,
        tokens=tokens,
        limiter=limiter,
        events=events,
        audit=audit,
        tenants=tenants,
        tenant_admin=tenant_admin,
        metrics=HttpMetrics(),
        recent_logs=recent_logs or RecentLines(),
        runtime=runtime,
        models=models,
        predictions=Predictor(runtime),
        publishing=publishing,
        gateway=gateway,
        store_health=store_health,
        lease=lease,
    )
