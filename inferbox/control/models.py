"""Models: the desired state in the store, handed to the runtime; status read back from it.

Writes are atomic across the two: a create that the runtime refuses leaves no row, and an update the
runtime refuses leaves the old spec running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from inferbox import storage
from inferbox.api.errors import ApiError, bad_request, conflict, not_found
from inferbox.control import events as ev
from inferbox.control.audit import FAILURE, SUCCESS, Actor, AuditLog
from inferbox.control.events import EventBus
from inferbox.control.outbound import OutboundRefused, check_url
from inferbox.control.tenants import label_problem
from inferbox.runtime import ModelSpec, ModelStatus, Runtime, SpecRefused
from inferbox.runtime.base import UNKNOWN
from inferbox.runtime.client import REPLICA_ERRORS, ReplicaClient, failure
from inferbox.server.frameworks import FRAMEWORKS, missing_extra
from inferbox.storage import StorageError
from inferbox.storage import validate as validate_storage
from inferbox.store import Store
from inferbox.store.tables import Model
from inferbox.timefmt import iso, now

log = logging.getLogger("inferbox.models")

MAX_NAME = 45  # KServe's limit: the predictor's service name must stay a DNS label
SCALE_METRICS = ("concurrency", "rps", "cpu", "memory")
DEFAULTS = {"minReplicas": 1, "maxReplicas": 1, "scaleTarget": 10, "scaleMetric": "concurrency"}
MAX_SCALE_TARGET = 100_000
READY_WAIT_SECONDS = 30.0
PREDICT_TIMEOUT_SECONDS = 60.0
JSON_HEADERS = {"Content-Type": "application/json"}


_CONFIG_FIELDS = ("framework", "storage_uri", "min_replicas", "max_replicas", "scale_target", "scale_metric")


@dataclass(frozen=True)
class ModelConfig:
    """The user-settable part of a model, validated."""

    framework: str
    storage_uri: str
    min_replicas: int
    max_replicas: int
    scale_target: int
    scale_metric: str

    @classmethod
    def of(cls, row: Model) -> ModelConfig:
        return cls(**{name: getattr(row, name) for name in _CONFIG_FIELDS})

    def spec_fields(self) -> dict[str, Any]:
        """The fields by their names in ModelSpec and in the models table (they are the same)."""
        return {name: getattr(self, name) for name in _CONFIG_FIELDS}

    def to_json(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "storageUri": self.storage_uri,
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "scaleTarget": self.scale_target,
            "scaleMetric": self.scale_metric,
        }


def _int_field(body: dict[str, Any], field: str) -> int:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"Field '{field}' must be an integer")
    return value


def validate_config(body: dict[str, Any], max_replicas: int) -> ModelConfig:
    """Check a full set of model fields (after defaults and merges); 400 naming the field."""
    for field in ("framework", "storageUri"):
        if body.get(field) in (None, ""):
            raise bad_request(f"Field '{field}' is required")
        if not isinstance(body[field], str):
            raise bad_request(f"Field '{field}' must be a string")
    framework = body["framework"]
    if framework not in FRAMEWORKS:
        raise bad_request(f"Field 'framework' must be one of {', '.join(FRAMEWORKS)}; got '{framework}'")
    extra = missing_extra(framework)
    if extra:
        raise bad_request(f"Field 'framework': {extra}")
    min_r, max_r = _int_field(body, "minReplicas"), _int_field(body, "maxReplicas")
    target = _int_field(body, "scaleTarget")
    if min_r < 0:
        raise bad_request("Field 'minReplicas' must be 0 or more")
    if max_r < 1:
        raise bad_request("Field 'maxReplicas' must be at least 1")
    if max_r > max_replicas:
        raise bad_request(f"Field 'maxReplicas' must be at most {max_replicas} (INFERBOX_MAX_REPLICAS)")
    if min_r > max_r:
        raise bad_request("Field 'minReplicas' must not exceed 'maxReplicas'")
    if target <= 0:
        raise bad_request("Field 'scaleTarget' must be greater than 0")
    if target > MAX_SCALE_TARGET:
        raise bad_request(f"Field 'scaleTarget' must be at most {MAX_SCALE_TARGET}")
    metric = body["scaleMetric"]
    if metric not in SCALE_METRICS:
        raise bad_request(f"Field 'scaleMetric' must be one of {', '.join(SCALE_METRICS)}")
    try:
        validate_storage(body["storageUri"])
    except StorageError as exc:
        message = str(exc).removeprefix("storageUri").lstrip(":").strip()
        raise bad_request(f"Field 'storageUri': {message}") from None
    return ModelConfig(framework, body["storageUri"], min_r, max_r, target, metric)


@dataclass(frozen=True)
class ModelRecord:
    """A model as the store holds it, for readers outside control/ (the API, the kubectl view): a
    plain value, never a live ORM row."""

    namespace: str
    name: str
    config: ModelConfig
    generation: int
    port: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Model) -> ModelRecord:
        return cls(
            row.namespace,
            row.name,
            ModelConfig.of(row),
            row.generation,
            row.port,
            row.created_at,
            row.updated_at,
        )


@dataclass(frozen=True)
class StoragePolicy:
    """Which storageUris a caller may use. A model file is code (a pickle runs as it loads) and a path
    names something on this machine, so tenants may use local paths only under `root`, and remote
    http(s) URIs only when they pass the outbound guard; nobody may use the data dir (it holds the
    store and the JWT secret)."""

    root: Path
    data_dir: Path

    def check(self, uri: str, *, restricted: bool) -> None:
        if storage.is_local(uri):
            try:
                path = storage.local_path(uri).resolve()
            except StorageError:
                return  # validate_config reports the shape problem
            if path.is_relative_to(self.data_dir.resolve()):
                raise bad_request("Field 'storageUri': the data dir cannot hold models")
            # Checked before existence, so that the answer says nothing of paths outside the root.
            if restricted and not path.is_relative_to(self.root.resolve()):
                raise bad_request(
                    f"Field 'storageUri': local paths must be under {self.root} (INFERBOX_MODEL_ROOT)"
                )
            return
        if restricted and urlsplit(uri).scheme in ("http", "https"):
            try:
                check_url(uri, public_only=True)
            except OutboundRefused as exc:
                raise bad_request(f"Field 'storageUri': {exc}") from None


def _spec(row: Model) -> ModelSpec:
    return ModelSpec(
        namespace=row.namespace,
        name=row.name,
        **ModelConfig.of(row).spec_fields(),
        generation=row.generation,
        port=row.port,
    )


def _conditions(status: ModelStatus) -> list[dict[str, Any]]:
    return [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": iso(c.last_transition_time),
        }
        for c in status.conditions
    ]


class ModelService:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        events: EventBus,
        audit: AuditLog,
        *,
        storage_policy: StoragePolicy,
        max_replicas: int = 16,
    ) -> None:
        self.store = store
        self.storage_policy = storage_policy
        self.max_replicas = max_replicas
        self.runtime = runtime
        self.events = events
        self.audit = audit
        self._http = ReplicaClient(timeout=PREDICT_TIMEOUT_SECONDS)
        # Called (in a worker thread) before a model's row goes, so that what hangs off it (its
        # publication) is taken down with its own audit, events and listeners first.
        self.before_delete: list[Callable[[Model, Actor], None]] = []
        # One create/update/delete at a time per model, so that store and runtime never disagree.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # Rows this service wrote or read, by (namespace, name): every predict looks its model up, and
        # every change to a model goes through this service, which keeps the cache current.
        self._rows: dict[tuple[str, str], Model] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bring every stored model back to its desired replicas."""
        rows = await run_in_threadpool(self._all_rows)
        await self.runtime.start([_spec(r) for r in rows])
        await run_in_threadpool(self._remember_ports, rows)

    async def close(self) -> None:
        await self._http.close()
        await self.runtime.close()

    def _all_rows(self) -> list[Model]:
        with self.store.session() as session:
            return list(session.scalars(select(Model).order_by(Model.namespace, Model.name)))

    def _remember_ports(self, rows: list[Model]) -> None:
        """Store the port the runtime chose, so that the model's URL survives restarts."""
        changed = []
        for row in rows:
            status = self.runtime.status(row.namespace, row.name)
            if status is not None and status.port is not None and status.port != row.port:
                changed.append((row.id, status.port))
        if changed:
            with self.store.session() as session:
                for row_id, port in changed:
                    row = session.get(Model, row_id)
                    if row is not None:
                        row.port = port
                        self._remember(row)

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        # Locks stay once made (one small object per name ever used): removing one while another
        # caller waits on it would let a third take a fresh lock and run beside the waiter.
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    # -- reading ---------------------------------------------------------------------------------
    def view(self, row: Model) -> dict[str, Any]:
        status = self.runtime.status(row.namespace, row.name)
        if status is None:
            status = ModelStatus(UNKNOWN, False, None, row.min_replicas, 0, 0)
        phase = status.phase
        return {
            "name": row.name,
            "namespace": row.namespace,
            "status": phase,
            "ready": status.ready,
            "url": status.url,
            "predictor": {"framework": row.framework, "storageUri": row.storage_uri},
            "minReplicas": row.min_replicas,
            "maxReplicas": row.max_replicas,
            "scaleTarget": row.scale_target,
            "scaleMetric": row.scale_metric,
            "createdAt": iso(row.created_at),
            "updatedAt": iso(row.updated_at),
            "statusDetails": {
                "ready": status.ready,
                "phase": phase,
                "replicas": {
                    "desired": status.desired,
                    "ready": status.ready_replicas,
                    "total": status.total,
                },
                "restarts": status.restarts,
                "reason": status.reason,
                "message": status.message,
                "conditions": _conditions(status),
            },
        }

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        stmt = select(Model).order_by(Model.namespace, Model.name)
        if namespace is not None:
            stmt = stmt.where(Model.namespace == namespace)
        with self.store.session() as session:
            rows = list(session.scalars(stmt))
        return [self.view(r) for r in rows]

    def records(self, namespace: str | None = None) -> list[ModelRecord]:
        """Every model (or one namespace's), ordered by namespace and name. Blocking: call it in a
        worker thread."""
        stmt = select(Model).order_by(Model.namespace, Model.name)
        if namespace is not None:
            stmt = stmt.where(Model.namespace == namespace)
        with self.store.session() as session:
            return [ModelRecord.of(r) for r in session.scalars(stmt)]

    def cached(self, namespace: str, name: str) -> Model | None:
        """The model's row if this service has it at hand (no store round trip), else None."""
        return self._rows.get((namespace, name))

    def find(self, namespace: str | None, name: str) -> Model:
        """The model `name` in `namespace` (None: in any namespace, for admins); 404 otherwise."""
        if namespace is not None and (row := self._rows.get((namespace, name))) is not None:
            return row
        stmt = select(Model).where(Model.name == name)
        if namespace is not None:
            stmt = stmt.where(Model.namespace == namespace)
        with self.store.session() as session:
            rows = list(session.scalars(stmt))
        if not rows:
            raise not_found("Model", f"No model named '{name}'" + (f" in '{namespace}'" if namespace else ""))
        if len(rows) > 1:
            spaces = ", ".join(sorted(r.namespace for r in rows))
            raise bad_request(f"Model '{name}' exists in several namespaces ({spaces}); pass ?namespace=")
        self._remember(rows[0])
        return rows[0]

    def _remember(self, row: Model) -> None:
        self._rows[(row.namespace, row.name)] = row

    def _forget(self, namespace: str, name: str) -> None:
        self._rows.pop((namespace, name), None)

    # -- writing ---------------------------------------------------------------------------------
    async def create(
        self, namespace: str, body: dict[str, Any], actor: Actor, *, restricted: bool = True
    ) -> dict[str, Any]:
        """`restricted`: the caller is a tenant user (see `StoragePolicy`)."""
        name = body.get("name")
        if name in (None, ""):
            raise bad_request("Field 'name' is required")
        if not isinstance(name, str):
            raise bad_request("Field 'name' must be a string")
        problem = label_problem(name, max_length=MAX_NAME)
        if problem:
            raise bad_request(f"Field 'name' {problem}")
        merged = {
            **DEFAULTS,
            **{k: v for k, v in body.items() if k in (*DEFAULTS, "framework", "storageUri")},
        }
        for key in DEFAULTS:
            if merged[key] is None:
                merged[key] = DEFAULTS[key]
        if isinstance(merged.get("storageUri"), str):
            await run_in_threadpool(self.storage_policy.check, merged["storageUri"], restricted=restricted)
        config = validate_config(merged, self.max_replicas)
        try:
            self.runtime.check(ModelSpec(namespace, name, **config.spec_fields()))
        except SpecRefused as exc:
            self._create_failed(actor, namespace, name, str(exc))
            raise bad_request(str(exc)) from None
        async with self._lock(namespace, name):
            stamp = now()
            row = Model(
                namespace=namespace,
                name=name,
                **config.spec_fields(),
                generation=1,
                port=None,
                created_at=stamp,
                updated_at=stamp,
            )
            try:
                row = await run_in_threadpool(self._insert, row)
            except IntegrityError:
                self._create_failed(actor, namespace, name, "exists")
                raise conflict(
                    "Model already exists", f"A model named '{name}' exists in '{namespace}'"
                ) from None
            # Announced before the runtime starts on it, so that listeners hear `created` before the
            # status changes the runtime reports; a refusal below is announced as `deleted`.
            self.events.publish(ev.MODEL_CREATED, namespace, name, {"config": config.to_json()})
            try:
                status = await self.runtime.apply(_spec(row))
            except SpecRefused as exc:
                await run_in_threadpool(self._delete_row, row.id)
                self._create_failed(actor, namespace, name, str(exc), announce=True)
                raise bad_request(str(exc)) from None
            except Exception as exc:
                log.exception("runtime failed to create %s/%s", namespace, name)
                await self._undo_create(row)
                self._create_failed(actor, namespace, name, type(exc).__name__, announce=True)
                raise ApiError(500, "Failed to create model", f"Runtime error: {exc}") from None
            if status.port is not None:
                await run_in_threadpool(self._set_port, row.id, status.port)
        self.audit.record(
            actor, "model.create", SUCCESS, target=name, tenant=namespace, details=config.to_json()
        )
        return {
            "message": "Model created successfully",
            "name": name,
            "namespace": namespace,
            "config": config.to_json(),
        }

    def _create_failed(
        self, actor: Actor, namespace: str, name: str, reason: str, *, announce: bool = False
    ) -> None:
        self.audit.record(
            actor, "model.create", FAILURE, target=name, tenant=namespace, details={"reason": reason}
        )
        if announce:
            self.events.publish(ev.MODEL_DELETED, namespace, name, {"reason": reason})

    async def _undo_create(self, row: Model) -> None:
        try:
            await self.runtime.delete(row.namespace, row.name)
        finally:
            await run_in_threadpool(self._delete_row, row.id)

    def _insert(self, row: Model) -> Model:
        with self.store.session() as session:
            session.add(row)
        self._remember(row)
        return row

    def _exists(self, row_id: int) -> bool:
        with self.store.session() as session:
            return session.get(Model, row_id) is not None

    def _delete_row(self, row_id: int) -> bool:
        """Delete the row; False when it was already gone. The DELETE's row count decides a race."""
        with self.store.session() as session:
            row = session.get(Model, row_id)
            if row is None:
                return False
            self._forget(row.namespace, row.name)
            return session.execute(delete(Model).where(Model.id == row_id)).rowcount > 0

    def _set_port(self, row_id: int, port: int) -> None:
        with self.store.session() as session:
            row = session.get(Model, row_id)
            if row is not None:
                row.port = port
                self._remember(row)

    async def update(
        self, row: Model, patch: dict[str, Any], actor: Actor, *, restricted: bool = True
    ) -> dict[str, Any]:
        allowed = ("framework", "storageUri", *DEFAULTS)
        unknown = sorted(set(patch) - set(allowed) - {"name", "namespace"})
        if unknown:
            raise bad_request(f"Field '{unknown[0]}' cannot be updated (updatable: {', '.join(allowed)})")
        if "name" in patch and patch["name"] != row.name:
            raise bad_request("Field 'name' cannot be changed")
        async with self._lock(row.namespace, row.name):
            # Merged over the row as it is now, under the lock: two concurrent updates of different
            # fields both land instead of the second putting back what the first changed.
            row = await run_in_threadpool(self.find, row.namespace, row.name)
            current = ModelConfig.of(row).to_json()
            merged = {**current, **{k: v for k, v in patch.items() if k in allowed and v is not None}}
            if "storageUri" in patch and isinstance(merged.get("storageUri"), str):
                await run_in_threadpool(
                    self.storage_policy.check, merged["storageUri"], restricted=restricted
                )
            config = validate_config(merged, self.max_replicas)
            rolled = config.framework != row.framework or config.storage_uri != row.storage_uri
            old_spec = _spec(row)
            try:
                self.runtime.check(replace(old_spec, **config.spec_fields()))
            except SpecRefused as exc:
                raise bad_request(str(exc)) from None
            new_row = await run_in_threadpool(
                partial(
                    self._write, row.id, config, generation=row.generation + int(rolled), updated_at=now()
                )
            )
            if new_row is None:
                raise not_found("Model", f"No model named '{row.name}'")
            try:
                await self.runtime.apply(_spec(new_row))
            except Exception as exc:
                await run_in_threadpool(
                    partial(
                        self._write,
                        row.id,
                        ModelConfig.of(row),
                        generation=row.generation,
                        updated_at=row.updated_at,
                    )
                )
                self.audit.record(
                    actor,
                    "model.update",
                    FAILURE,
                    target=row.name,
                    tenant=row.namespace,
                    details={"reason": str(exc)},
                )
                if isinstance(exc, SpecRefused):
                    raise bad_request(str(exc)) from None
                raise ApiError(500, "Failed to update model", f"Runtime error: {exc}") from None
        self.audit.record(
            actor,
            "model.update",
            SUCCESS,
            target=row.name,
            tenant=row.namespace,
            details={"changes": {k: v for k, v in patch.items() if k in allowed}},
        )
        return {
            "message": "Model updated successfully",
            "name": row.name,
            "namespace": row.namespace,
            "config": config.to_json(),
            "model": self.view(new_row),
        }

    def _write(
        self, row_id: int, config: ModelConfig, *, generation: int, updated_at: datetime
    ) -> Model | None:
        """Store a model's config (an update, or the old config back when the runtime refused it)."""
        with self.store.session() as session:
            row = session.get(Model, row_id)
            if row is None:
                return None
            for name, value in config.spec_fields().items():
                setattr(row, name, value)
            row.generation, row.updated_at = generation, updated_at
        self._remember(row)
        return row

    async def delete(self, row: Model, actor: Actor) -> None:
        """Delete a model: its publication, its row, its replicas. Of concurrent deletes (in this
        process or any other sharing the store) exactly one succeeds; the others find no model (404)."""
        async with self._lock(row.namespace, row.name):
            if not await run_in_threadpool(self._exists, row.id):
                self._forget(row.namespace, row.name)
                raise not_found("Model", f"No model named '{row.name}'")
            for hook in self.before_delete:
                await run_in_threadpool(hook, row, actor)
            if not await run_in_threadpool(self._delete_row, row.id):
                raise not_found("Model", f"No model named '{row.name}'")
            await self.runtime.delete(row.namespace, row.name)
        self.audit.record(actor, "model.delete", SUCCESS, target=row.name, tenant=row.namespace)
        self.events.publish(ev.MODEL_DELETED, row.namespace, row.name, {})

    async def delete_namespace(self, namespace: str, actor: Actor) -> None:
        rows = await run_in_threadpool(self._rows_of, namespace)
        for row in rows:
            try:
                await self.delete(row, actor)
            except ApiError as exc:
                if exc.status != 404:  # deleted meanwhile by someone else: what we wanted
                    raise

    def _rows_of(self, namespace: str) -> list[Model]:
        with self.store.session() as session:
            return list(session.scalars(select(Model).where(Model.namespace == namespace)))

    # -- calling ---------------------------------------------------------------------------------
    async def predict(self, row: Model, input_data: Any) -> tuple[int, bytes]:
        """Send `input_data` to a replica, as V1 or V2 by its shape; the model's answer comes back as is."""
        path = self._predict_path(row.name, input_data)
        body = orjson.dumps(input_data)
        try:
            answer = await self._http.call(
                lambda: self.runtime.connect(row.namespace, row.name, READY_WAIT_SECONDS),
                "POST",
                path,
                body,
                JSON_HEADERS,
            )
        except REPLICA_ERRORS as exc:
            f = failure(exc)
            raise ApiError(f.status, f.error, f.details, headers=f.headers) from None
        return answer.status, answer.body

    @staticmethod
    def _predict_path(name: str, input_data: Any) -> str:
        if not isinstance(input_data, dict):
            raise bad_request("Field 'inputData' must be an object with 'instances' (V1) or 'inputs' (V2)")
        inputs = input_data.get("inputs")
        is_v2 = (
            isinstance(inputs, list)
            and bool(inputs)
            and all(isinstance(t, dict) and "datatype" in t for t in inputs)
        )
        if is_v2:
            return f"/v2/models/{name}/infer"
        if "instances" not in input_data and "inputs" not in input_data:
            raise bad_request("Field 'inputData' must hold 'instances' (V1) or 'inputs' (V2)")
        return f"/v1/models/{name}:predict"

    async def predict_custom(self, url: str, input_data: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        """Admin-only: call a URL the admin gave, after refusing link-local and metadata addresses."""
        try:
            await run_in_threadpool(check_url, url)
        except OutboundRefused as exc:
            raise bad_request(f"Field 'connectionSettings.url': {exc}") from None
        # An arbitrary (maybe https) URL: the general-purpose client, not the replica client.
        body = orjson.dumps(input_data)
        try:
            async with httpx.AsyncClient(timeout=PREDICT_TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = await client.post(url, content=body, headers={**headers, **JSON_HEADERS})
        except httpx.TimeoutException:
            raise ApiError(504, "Model timed out", f"No answer from {url}") from None
        except httpx.TransportError as exc:
            raise ApiError(502, "Custom endpoint unreachable", type(exc).__name__) from None
        return response.status_code, response.content

    async def input_example(self, row: Model) -> list[list[float]] | None:
        """Rows that fit the model, from the input width its replica reports (V2 metadata), for
        documentation; None when the model cannot tell (not ready, or no fixed width). Never wakes a
        model scaled to zero: publishing must not start replicas."""
        status = self.runtime.status(row.namespace, row.name)
        if status is None or status.ready_replicas == 0:
            return None
        try:
            async with self.runtime.connect(row.namespace, row.name, 2.0) as base_url:
                answer = await self._http.request("GET", base_url, f"/v2/models/{row.name}", timeout=2.0)
            shape = orjson.loads(answer.body)["inputs"][0]["shape"]
        except (
            *REPLICA_ERRORS,
            KeyError,
            IndexError,
            TypeError,
            ValueError,
        ):
            return None
        width = shape[-1] if isinstance(shape, list) and len(shape) == 2 else None
        if not isinstance(width, int) or not 0 < width <= 64:
            return None
        return [[float(i + 1) for i in range(width)]]

    async def logs(self, row: Model, lines: int) -> list[str]:
        return await self.runtime.logs(row.namespace, row.name, lines)
