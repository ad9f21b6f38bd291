"""The cluster as the admin sees it: one snapshot of the platform for the system view and kubectl.

What the store wants (models and tenants, read in a worker thread) beside what the runtime sees (each
model's status, the replicas, the nodes; read on the event loop, which owns the runtime), as the plain
values the local kubectl answers from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from inferbox.blocking import in_thread
from inferbox.runtime.base import ModelStatus, Runtime
from inferbox.runtime.local.kubectl.cluster import Cluster, ModelState, Namespace

if TYPE_CHECKING:
    from inferbox.control.model_rows import ModelRecord
    from inferbox.control.models import ModelService
    from inferbox.control.tenants import TenantDirectory


def _model_state(record: ModelRecord, status: ModelStatus | None) -> ModelState:
    config = record.config
    return ModelState(
        namespace=record.namespace,
        name=record.name,
        framework=config.framework,
        storage_uri=config.storage_uri,
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        scale_target=config.scale_target,
        scale_metric=config.scale_metric,
        generation=record.generation,
        created=record.created_at,
        status=status,
        args=tuple(record.spec.server_args),
    )


async def snapshot(models: ModelService, tenants: TenantDirectory, runtime: Runtime) -> Cluster:
    """What the platform holds now."""
    records = await in_thread(models.rows.records)
    views = await in_thread(tenants.list)
    states = [_model_state(r, runtime.status(r.namespace, r.name)) for r in records]
    return Cluster(
        now=datetime.now(UTC),
        nodes=runtime.nodes(),
        namespaces=[Namespace(t.name, t.status, t.created) for t in views],
        models=states,
        replicas=runtime.replicas(),
    )
