"""The platform: the parts one running control plane is made of, built from its settings.

The API reads them from `app.state.platform`; nothing lives in module globals, so a test can build as
many platforms as it needs side by side.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from inferbox.api.metrics import HttpMetrics
from inferbox.auth.tokens import TokenService
from inferbox.config import Settings, ensure_data_dir
from inferbox.control.audit import AuditLog
from inferbox.control.events import EventBus
from inferbox.control.lease import Lease
from inferbox.control.models import ModelService, StoragePolicy
from inferbox.control.publishing import PublishingService
from inferbox.control.tenants import TenantDirectory
from inferbox.gateway.service import GatewayService
from inferbox.gateway.upstream import RuntimeUpstream
from inferbox.health import Dependency
from inferbox.logs import RecentLines
from inferbox.ratelimit import Limiter
from inferbox.runtime import Runtime
from inferbox.runtime.local import LocalRuntime
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
    metrics: HttpMetrics
    recent_logs: RecentLines
    runtime: Runtime
    models: ModelService
    publishing: PublishingService
    gateway: GatewayService
    # What this process last saw of the store (its outages are logged once per interval).
    store_health: Dependency
    # Held while this control plane owns the local runtime's processes (see control/lease.py).
    lease: Lease | None = None
    started_at: float = field(default_factory=time.time)


def build(settings: Settings, recent_logs: RecentLines | None = None) -> Platform:
    """Open the store (running migrations) and wire the parts. `settings.jwt_secret` must be set.

    Raises RuntimeLocked when another control plane owns the local runtime of this store or data dir:
    a second one would run every model twice (see control/lease.py)."""
    assert settings.jwt_secret, "ensure_jwt_secret() first"
    ensure_data_dir(settings.data_dir)
    store = Store(settings.effective_database_url)
    store.migrate()
    tokens = TokenService(
        settings.jwt_secret,
        issuer=settings.token_issuer,
        verify_issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_url=settings.jwt_jwks_url,
        admin_username=settings.admin_username,
        ttl_seconds=settings.token_ttl_seconds,
    )
    events = EventBus()
    runtime = LocalRuntime(
        settings.data_dir / "runtime",
        events,
        scale_to_zero_seconds=settings.scale_to_zero_seconds,
        scale_down_delay_seconds=settings.scale_down_delay_seconds,
        max_body_bytes=settings.max_body_bytes,
    )
    lease = Lease(store, runtime.name)
    try:
        runtime.claim()
        lease.acquire()
    except BaseException:
        runtime.unclaim()
        store.close()
        raise
    store_health = Dependency("the store")
    audit = AuditLog(store, store_health)
    tenants = TenantDirectory(store)
    # The API falls back to in-process limits while Redis is down; the gateway refuses (its limits are
    # the publications' contracts). Both share one connection pool and one view of Redis's health.
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
    )
    models.before_delete.append(publishing.unpublish_deleted_model)
    return Platform(
        settings=settings,
        store=store,
        tokens=tokens,
        limiter=limiter,
        events=events,
        audit=audit,
        tenants=tenants,
        metrics=HttpMetrics(),
        recent_logs=recent_logs or RecentLines(),
        runtime=runtime,
        models=models,
        publishing=publishing,
        gateway=gateway,
        store_health=store_health,
        lease=lease,
    )
