"""Tenants: named namespaces that own models. `TenantDirectory` answers "does tenant X exist" for every
authenticated request, so it caches briefly; changes made in this process are seen at once."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from inferbox.blocking import in_thread
from inferbox.store import Store, affected
from inferbox.store.tables import Model, Tenant

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Names that would be confused with the admin or with Kubernetes' own namespaces.
RESERVED = frozenset({"admin", "default", "kube-system", "kube-public", "kube-node-lease", "inferbox-system"})


class TenantExists(Exception):
    pass


class TenantNotFound(Exception):
    pass


def label_problem(name: str, *, max_length: int = 63) -> str | None:
    """Why `name` is not a DNS-1123 label of at most `max_length` characters, or None."""
    if not name:
        return "must not be empty"
    if len(name) > max_length:
        return f"must be at most {max_length} characters"
    if not DNS1123_LABEL.match(name):
        return (
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


@dataclass(frozen=True)
class TenantView:
    name: str
    status: str
    created: datetime


class TenantDirectory:
    def __init__(self, store: Store, cache_seconds: float = 2.0) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._names: frozenset[str] = frozenset()
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def known(self, name: str) -> bool:
        """True when the cache (fresh) knows the tenant; False means "ask `exists`", not "no"."""
        with self._lock:
            return name in self._names and time.monotonic() - self._loaded_at < self._cache_seconds

    async def exists_async(self, name: str) -> bool:
        """`exists` for the event loop: the store is asked (in a worker thread) only on a cache miss."""
        return self.known(name) or await in_thread(self.exists, name)

    def exists(self, name: str) -> bool:
        # A miss always asks the store: a tenant created by another process must work at once.
        return self.known(name) or name in self._reload()

    def _reload(self) -> frozenset[str]:
        with self._store.session() as session:
            names = frozenset(session.scalars(select(Tenant.name)))
        with self._lock:
            self._names, self._loaded_at = names, time.monotonic()
        return names

    def list(self) -> list[TenantView]:
        with self._store.session() as session:
            rows = session.scalars(select(Tenant).order_by(Tenant.name)).all()
            return [TenantView(t.name, t.status, t.created_at) for t in rows]

    def create(self, name: str) -> TenantView:
        now = datetime.now(UTC)
        try:
            with self._store.session() as session:
                session.add(Tenant(name=name, status="Active", created_at=now))
        except IntegrityError:
            raise TenantExists(name) from None
        self._reload()
        return TenantView(name, "Active", now)

    def model_count(self, name: str) -> int:
        with self._store.session() as session:
            return session.scalar(select(func.count()).select_from(Model).where(Model.namespace == name)) or 0

    def delete(self, name: str) -> None:
        """Remove the tenant row (its models go with it in the store: the caller stops them first)."""
        with self._store.session() as session:
            if affected(session.execute(delete(Tenant).where(Tenant.name == name))) == 0:
                raise TenantNotFound(name)
        self._reload()
