"""Models: the desired state in the store, handed to the runtime; status read back from it.

Writes are atomic across the two: a create that the runtime refuses leaves no row, and an update the
runtime refuses leaves the old spec running. One create, update or delete runs at a time per model in
this process; across processes the store's constraints and row counts decide (see model_rows.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NoReturn

from sqlalchemy.exc import IntegrityError

from inferbox.blocking import in_thread
from inferbox.control import events as ev
from inferbox.control.audit import FAILURE, SUCCESS, Actor, AuditLog
from inferbox.control.errors import Conflict, InvalidField, NotFound, OperationFailed
from inferbox.control.events import EventBus
from inferbox.control.model_config import ModelConfig, check_name
from inferbox.control.model_rows import ModelRecord, ModelRows
from inferbox.control.storage_policy import StoragePolicy
from inferbox.control.validation import validated
from inferbox.runtime import ModelSpec, ModelStatus, Runtime, RuntimeUnavailable, SpecRefused
from inferbox.runtime.base import UNKNOWN
from inferbox.server.frameworks import missing_extra
from inferbox.store import Store
from inferbox.timefmt import iso, now

log = logging.getLogger("inferbox.models")


class ModelService:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        events: EventBus,
        audit: AuditLog,
        *,
        storage_policy: StoragePolicy,
        max_replicas: int = 100,
        check_storage_here: bool = True,
    ) -> None:
        self.rows = ModelRows(store)
        # False on Kubernetes: KServe's storage initializer fetches models inside the cluster, so
        # whether a URI can be used is not something this machine can tell.
        self.check_storage_here = check_storage_here
        self.storage_policy = storage_policy
        self.max_replicas = max_replicas
        self.runtime = runtime
        self.events = events
        self.audit = audit
        # Called (in a worker thread) before a model's row goes, so that what hangs off it (its
        # publication) is taken down with its own audit, events and listeners first.
        self.before_delete: list[Callable[[ModelRecord, Actor], None]] = []
        # Locks stay once made (one small object per name ever used): removing one while another
        # caller waits on it would let a third take a fresh lock and run beside the waiter.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def start(self) -> None:
        """Bring every stored model back to its desired replicas, on their recorded ports."""
        records = await in_thread(self.rows.records)
        await self.runtime.start([r.spec for r in records])
        for record in records:
            status = self.runtime.status(record.namespace, record.name)
            if status is not None and status.port is not None and status.port != record.port:
                await in_thread(self.rows.set_port, record.id, status.port)

    async def close(self) -> None:
        await self.runtime.close()

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    # -- reading ---------------------------------------------------------------------------------
    def view(self, record: ModelRecord) -> dict[str, Any]:
        status = self.runtime.status(record.namespace, record.name)
        if status is None:
            status = ModelStatus(UNKNOWN, False, None, record.config.min_replicas, 0, 0)
        config = record.config.view()
        return {
            "name": record.name,
            "namespace": record.namespace,
            "status": status.phase,
            "ready": status.ready,
            "url": status.url,
            "predictor": {"framework": config["framework"], "storageUri": config["storageUri"]},
            **{k: v for k, v in config.items() if k not in ("framework", "storageUri")},
            "createdAt": iso(record.created_at),
            "updatedAt": iso(record.updated_at),
            "statusDetails": {
                "ready": status.ready,
                "phase": status.phase,
                "replicas": {
                    "desired": status.desired,
                    "ready": status.ready_replicas,
                    "total": status.total,
                    "pending": status.pending,
                },
                "restarts": status.restarts,
                "grpcPort": status.grpc_port,
                "reason": status.reason,
                "message": status.message,
                # The failure's message while the model failed (FailedToLoad), else null.
                "error": status.error,
                "conditions": [c.to_json() for c in status.conditions],
            },
        }

    def views(self, namespace: str | None) -> list[dict[str, Any]]:
        """The views of every model (or one namespace's). Blocking: call it in a worker thread."""
        return [self.view(r) for r in self.rows.records(namespace)]

    # -- checks ----------------------------------------------------------------------------------
    async def _check(
        self, namespace: str, name: str, config: ModelConfig, *, restricted: bool, storage_changed: bool
    ) -> None:
        """Everything that can refuse a config, before anything is written."""
        config.check_bounds(self.max_replicas)
        extra = missing_extra(config.framework)
        if extra:
            raise InvalidField(f"Field 'framework': {extra}")
        if storage_changed:
            await in_thread(self.storage_policy.check, config.storage_uri, restricted=restricted)
            if self.check_storage_here:
                await in_thread(self.storage_policy.check_exists, config.storage_uri)
        try:
            self.runtime.check(ModelSpec(namespace, name, **config.fields()))
        except SpecRefused as exc:
            raise InvalidField(str(exc)) from None

    # -- writing ---------------------------------------------------------------------------------
    async def create(
        self, namespace: str, name: str, config: ModelConfig, actor: Actor, *, restricted: bool = True
    ) -> dict[str, Any]:
        """`restricted`: the caller is a tenant user (see `StoragePolicy`)."""
        try:
            check_name(name)
            await self._check(namespace, name, config, restricted=restricted, storage_changed=True)
        except InvalidField as exc:
            self._create_failed(actor, namespace, name, exc.details)
            raise
        async with self._lock(namespace, name):
            try:
                record = await in_thread(self.rows.insert, namespace, name, config, now())
            except IntegrityError:
                self._create_failed(actor, namespace, name, "exists")
                raise Conflict(
                    f"A model named '{name}' exists in '{namespace}'", "Model already exists"
                ) from None
            # Announced before the runtime starts on it, so that listeners hear `created` before the
            # status changes the runtime reports; a refusal below is announced as `deleted`.
            self.events.publish(ev.MODEL_CREATED, namespace, name, {"config": config.view()})
            try:
                status = await self.runtime.apply(record.spec)
            except Exception as exc:
                await self._undo_create(record, actor, exc)
            if status.port is not None:
                await in_thread(self.rows.set_port, record.id, status.port)
        self.audit.record(
            actor, "model.create", SUCCESS, target=name, tenant=namespace, details=config.view()
        )
        return {
            "message": "Model created successfully",
            "name": name,
            "namespace": namespace,
            "config": config.view(),
        }

    def _create_failed(
        self, actor: Actor, namespace: str, name: str, reason: str, *, announce: bool = False
    ) -> None:
        self.audit.record(
            actor, "model.create", FAILURE, target=name, tenant=namespace, details={"reason": reason}
        )
        if announce:
            self.events.publish(ev.MODEL_DELETED, namespace, name, {"reason": reason})

    async def _undo_create(self, record: ModelRecord, actor: Actor, exc: Exception) -> NoReturn:
        """The runtime refused or failed a new model: take it back out, and say why (raises)."""
        try:
            await self.runtime.delete(record.namespace, record.name)
        finally:
            await in_thread(self.rows.delete, record.id)
        self._create_failed(
            actor, record.namespace, record.name, str(exc) or type(exc).__name__, announce=True
        )
        if isinstance(exc, SpecRefused):
            raise InvalidField(str(exc)) from None
        if isinstance(exc, RuntimeUnavailable):
            raise exc
        log.error("runtime failed to create %s/%s", record.namespace, record.name, exc_info=exc)
        raise OperationFailed(f"Runtime error: {exc}", "Failed to create model") from None

    @staticmethod
    def _changes(record: ModelRecord, patch: dict[str, Any]) -> dict[str, Any]:
        """The fields an update asks to change (by their API names), after refusing what it may not."""
        allowed = ModelConfig.api_names()
        unknown = sorted(set(patch) - set(allowed) - {"name", "namespace"})
        if unknown:
            raise InvalidField(f"Field '{unknown[0]}' cannot be updated (updatable: {', '.join(allowed)})")
        if "name" in patch and patch["name"] != record.name:
            raise InvalidField("Field 'name' cannot be changed")
        if not patch:
            raise InvalidField("The body names no field to update")
        return {k: v for k, v in patch.items() if k in allowed and v is not None}

    async def update(
        self, record: ModelRecord, patch: dict[str, Any], actor: Actor, *, restricted: bool = True
    ) -> dict[str, Any]:
        """Change some of a model's fields (`patch` by their API names; null leaves a field as it is)."""
        changes = self._changes(record, patch)
        async with self._lock(record.namespace, record.name):
            # Merged over the model as it is now, under the lock: two concurrent updates of different
            # fields both land instead of the second putting back what the first changed.
            current = await in_thread(self.rows.find, record.namespace, record.name, fresh=True)
            config = validated(ModelConfig, {**current.config.view(), **changes})
            storage_changed = config.storage_uri != current.config.storage_uri
            await self._check(
                current.namespace,
                current.name,
                config,
                restricted=restricted,
                storage_changed=storage_changed,
            )
            # A new task is a new model server command line: the replicas are rolled for it too.
            rolled = (
                config.framework != current.config.framework
                or storage_changed
                or config.args != current.config.args
            )
            updated = await in_thread(
                self.rows.write, current.id, config, current.generation + int(rolled), now()
            )
            if updated is None:
                raise NotFound("Model", f"No model named '{current.name}'")
            try:
                await self.runtime.apply(updated.spec)
            except Exception as exc:
                await self._undo_update(current, actor, exc)
        self.audit.record(
            actor,
            "model.update",
            SUCCESS,
            target=current.name,
            tenant=current.namespace,
            details={"changes": changes},
        )
        return {
            "message": "Model updated successfully",
            "name": current.name,
            "namespace": current.namespace,
            "config": config.view(),
            "model": self.view(updated),
        }

    async def _undo_update(self, before: ModelRecord, actor: Actor, exc: Exception) -> NoReturn:
        """The runtime refused or failed an update: the old config back in the store (raises)."""
        await in_thread(self.rows.write, before.id, before.config, before.generation, before.updated_at)
        self.audit.record(
            actor,
            "model.update",
            FAILURE,
            target=before.name,
            tenant=before.namespace,
            details={"reason": str(exc)},
        )
        if isinstance(exc, SpecRefused):
            raise InvalidField(str(exc)) from None
        if isinstance(exc, RuntimeUnavailable):
            raise exc
        raise OperationFailed(f"Runtime error: {exc}", "Failed to update model") from None

    async def delete(self, record: ModelRecord, actor: Actor) -> None:
        """Delete a model: its publication, its row, its replicas. Of concurrent deletes (in this
        process or any other sharing the store) exactly one succeeds; the others find no model."""
        async with self._lock(record.namespace, record.name):
            if not await in_thread(self.rows.exists, record.id):
                self.rows.forget(record.namespace, record.name)
                raise NotFound("Model", f"No model named '{record.name}'")
            for hook in self.before_delete:
                await in_thread(hook, record, actor)
            if not await in_thread(self.rows.delete, record.id):
                raise NotFound("Model", f"No model named '{record.name}'")
            await self.runtime.delete(record.namespace, record.name)
        self.audit.record(actor, "model.delete", SUCCESS, target=record.name, tenant=record.namespace)
        self.events.publish(ev.MODEL_DELETED, record.namespace, record.name, {})

    async def delete_namespace(self, namespace: str, actor: Actor) -> None:
        for record in await in_thread(self.rows.records, namespace):
            try:
                await self.delete(record, actor)
            except NotFound:  # deleted meanwhile by someone else: what we wanted
                continue

    async def logs(self, record: ModelRecord, lines: int) -> list[str]:
        return await self.runtime.logs(record.namespace, record.name, lines)
