"""The models' rows in the store, and the records made of them.

`ModelRows` is the one place models are read from and written to the store; it hands out
`ModelRecord`s, plain values, and keeps the records it has seen at hand (every predict looks its model
up, and every change to a model goes through here, which keeps the cache current). Blocking: call its
methods in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from inferbox.control.errors import InvalidField, NotFound
from inferbox.control.model_config import ModelConfig
from inferbox.runtime import ModelSpec
from inferbox.store import Store, affected
from inferbox.store.tables import Model


@dataclass(frozen=True)
class ModelRecord:
    """A model as the store holds it, for readers outside control/ (the API, publishing, the kubectl
    view): a plain value, never a live ORM row."""

    id: int
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
            row.id,
            row.namespace,
            row.name,
            ModelConfig.of(row),
            row.generation,
            row.port,
            row.created_at,
            row.updated_at,
        )

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            self.namespace, self.name, **self.config.fields(), generation=self.generation, port=self.port
        )


class ModelRows:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[str, str], ModelRecord] = {}

    def _remember(self, record: ModelRecord) -> ModelRecord:
        self._cache[(record.namespace, record.name)] = record
        return record

    def forget(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)

    def cached(self, namespace: str, name: str) -> ModelRecord | None:
        """The model if it is at hand (no store round trip), else None. Safe on the event loop."""
        return self._cache.get((namespace, name))

    def records(self, namespace: str | None = None) -> list[ModelRecord]:
        """Every model (or one namespace's), ordered by namespace and name."""
        stmt = select(Model).order_by(Model.namespace, Model.name)
        if namespace is not None:
            stmt = stmt.where(Model.namespace == namespace)
        with self.store.session() as session:
            return [ModelRecord.of(r) for r in session.scalars(stmt)]

    def find(self, namespace: str | None, name: str, *, fresh: bool = False) -> ModelRecord:
        """The model `name` in `namespace` (None: in any namespace, for admins); NotFound otherwise.
        `fresh`: read the store even when the record is at hand."""
        if not fresh and namespace is not None and (record := self.cached(namespace, name)) is not None:
            return record
        stmt = select(Model).where(Model.name == name)
        if namespace is not None:
            stmt = stmt.where(Model.namespace == namespace)
        with self.store.session() as session:
            found = [ModelRecord.of(r) for r in session.scalars(stmt)]
        if not found:
            raise NotFound("Model", f"No model named '{name}'" + (f" in '{namespace}'" if namespace else ""))
        if len(found) > 1:
            spaces = ", ".join(sorted(r.namespace for r in found))
            raise InvalidField(f"Model '{name}' exists in several namespaces ({spaces}); pass ?namespace=")
        return self._remember(found[0])

    def insert(self, namespace: str, name: str, config: ModelConfig, stamp: datetime) -> ModelRecord:
        """A new model's row (IntegrityError when the name is taken in the namespace)."""
        row = Model(
            namespace=namespace,
            name=name,
            **config.fields(),
            generation=1,
            port=None,
            created_at=stamp,
            updated_at=stamp,
        )
        with self.store.session() as session:
            session.add(row)
        return self._remember(ModelRecord.of(row))

    def exists(self, row_id: int) -> bool:
        with self.store.session() as session:
            return session.get(Model, row_id) is not None

    def delete(self, row_id: int) -> bool:
        """Delete the row; False when it was already gone. The DELETE's row count decides a race."""
        with self.store.session() as session:
            row = session.get(Model, row_id)
            if row is None:
                return False
            self.forget(row.namespace, row.name)
            return affected(session.execute(delete(Model).where(Model.id == row_id))) > 0

    def set_port(self, row_id: int, port: int) -> None:
        """Store the port the runtime chose, so that the model's URL survives restarts."""
        with self.store.session() as session:
            row = session.get(Model, row_id)
            if row is not None:
                row.port = port
                self._remember(ModelRecord.of(row))

    def write(
        self, row_id: int, config: ModelConfig, generation: int, updated_at: datetime
    ) -> ModelRecord | None:
        """Store a model's config (an update, or the old config back when the runtime refused it)."""
        with self.store.session() as session:
            row = session.get(Model, row_id)
            if row is None:
                return None
            for name, value in config.fields().items():
                setattr(row, name, value)
            row.generation, row.updated_at = generation, updated_at
        return self._remember(ModelRecord.of(row))
