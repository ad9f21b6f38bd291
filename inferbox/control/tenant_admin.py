"""Tenant administration: the naming rules, the audit, and what a delete takes with it (every model of
the tenant, stopped first, when asked to). The API's routes and `inferbox tenant` both come here."""

from __future__ import annotations

from collections.abc import Callable

from inferbox.blocking import in_thread
from inferbox.control.audit import FAILURE, SUCCESS, Actor, AuditLog
from inferbox.control.errors import Conflict, InvalidField, NotFound
from inferbox.control.models import ModelService
from inferbox.control.tenants import (
    RESERVED,
    TenantDirectory,
    TenantExists,
    TenantNotFound,
    TenantView,
    label_problem,
)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a tenant, or None."""
    problem = label_problem(name)
    if problem is None and name in RESERVED:
        problem = "is reserved"
    return problem


class TenantAdmin:
    def __init__(
        self, directory: TenantDirectory, audit: AuditLog, models: ModelService | None = None
    ) -> None:
        self.directory = directory
        self.audit = audit
        self.models = models
        # Called (blocking, in a worker thread) after a tenant is made or removed: the Kubernetes
        # runtime's namespace for it.
        self.on_created: list[Callable[[str], None]] = []
        self.on_deleted: list[Callable[[str], None]] = []

    def create(self, name: str, actor: Actor) -> TenantView:
        """Blocking: call it in a worker thread."""
        problem = name_problem(name)
        if problem:
            self.audit.record(actor, "tenant.create", FAILURE, target=name, details={"reason": problem})
            raise InvalidField(f"Field 'name' {problem}")
        try:
            tenant = self.directory.create(name)
        except TenantExists:
            self.audit.record(actor, "tenant.create", FAILURE, target=name, details={"reason": "exists"})
            raise Conflict(f"Tenant '{name}' already exists", "Tenant already exists") from None
        for hook in self.on_created:
            hook(name)
        self.audit.record(actor, "tenant.create", SUCCESS, target=name, tenant=name)
        return tenant

    async def delete(self, name: str, actor: Actor, *, force: bool) -> None:
        """Delete a tenant; with `force`, its models first (their replicas stopped, their publications
        taken down). Without it a tenant that owns models is a Conflict."""
        if not await in_thread(self.directory.exists, name):
            raise NotFound("Tenant", f"No tenant named '{name}'")
        count = await in_thread(self.directory.model_count, name)
        if count and not (force and self.models is not None):
            self.audit.record(
                actor, "tenant.delete", FAILURE, target=name, tenant=name, details={"models": count}
            )
            raise Conflict(
                f"Tenant '{name}' owns {count} model(s); pass ?force=true", "Tenant still owns models"
            )
        if self.models is not None:
            await self.models.delete_namespace(name, actor)
        try:
            await in_thread(self.directory.delete, name)
        except TenantNotFound:
            raise NotFound("Tenant", f"No tenant named '{name}'") from None
        for hook in self.on_deleted:
            await in_thread(hook, name)
        self.audit.record(actor, "tenant.delete", SUCCESS, target=name, tenant=name, details={"force": force})
