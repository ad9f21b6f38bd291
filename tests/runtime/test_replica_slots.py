"""The machine's replica slots: models share them, and what does not fit waits as pending replicas.

A cluster leaves pods Pending when no node can hold them; the local runtime with `replica_slots=2`
does the same with real model-server processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferbox.runtime.base import PENDING, READY, ModelSpec
from inferbox.runtime.local.slots import ReplicaSlots, default_slots

NS = "tenant-a"


def spec(path: Path, name: str, **kwargs: object) -> ModelSpec:
    return ModelSpec(NS, name, "sklearn", str(path), **kwargs)  # type: ignore[arg-type]


def test_slots_count_holders_and_tell_listeners_when_one_frees() -> None:
    slots = ReplicaSlots(2)
    heard: list[int] = []
    slots.listen(lambda: heard.append(slots.free))
    a, b, c = object(), object(), object()
    assert slots.take(a) and slots.take(a) and slots.used == 1  # holding twice is holding once
    assert slots.take(b) and not slots.take(c)
    assert slots.free == 0
    slots.give(c)  # holds none: nothing frees, nobody is told
    assert heard == []
    slots.give(a)
    assert heard == [1] and slots.take(c)
    assert "INFERBOX_REPLICA_SLOTS" in slots.explain(3) and "3 replica(s) pending" in slots.explain(3)


def test_the_default_is_the_machine_s_memory_over_256_mib() -> None:
    from inferbox.runtime.local.node import meminfo

    assert default_slots() == max(meminfo()["MemTotal"] // (256 * 1024 * 1024), 1)
    assert ReplicaSlots(0).capacity == default_slots()  # 0 means "work it out"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_models_share_the_slots_and_the_rest_is_pending(make_runtime, svc, wait_for) -> None:
    runtime = await make_runtime(replica_slots=2)
    await runtime.apply(spec(svc.model_dir, "big", min_replicas=2, max_replicas=20))
    await wait_for(lambda: runtime.status(NS, "big").ready_replicas == 2, 60, "big Ready with 2")

    # A second model finds the machine full: no process, Pending, as an unschedulable pod.
    await runtime.apply(spec(svc.model_dir, "small", min_replicas=1, max_replicas=1))

    def waiting() -> object:
        status = runtime.status(NS, "small")
        return status if status is not None and status.pending == 1 else None

    status = await wait_for(waiting, 10, "small to report a pending replica")
    assert status.phase == PENDING and not status.ready
    assert status.total == 0 and status.desired == 1
    assert status.reason == "Unschedulable"
    assert status.message is not None and "all 2 replica slots" in status.message
    ready_condition = next(c for c in status.conditions if c.type == "Ready")
    assert ready_condition.reason == "Unschedulable"
    assert [r.model for r in runtime.replicas(NS)].count("small") == 0

    # Asking for more than fits: the model runs what it has and reports the rest.
    await runtime.apply(spec(svc.model_dir, "big", min_replicas=3, max_replicas=20))
    await wait_for(lambda: runtime.status(NS, "big").pending == 1, 10, "big to report 1 pending")
    big = runtime.status(NS, "big")
    assert big.phase == READY and big.ready_replicas == 2 and big.desired == 3
    assert big.reason == "Unschedulable"

    # The big model shrinks: the freed slot goes to the one waiting, which becomes Ready.
    await runtime.apply(spec(svc.model_dir, "big", min_replicas=1, max_replicas=1))
    await wait_for(lambda: runtime.status(NS, "small").ready, 60, "small Ready in the freed slot")
    small, big = runtime.status(NS, "small"), runtime.status(NS, "big")
    assert small.pending == 0 and small.reason is None
    assert big.pending == 0 and big.ready_replicas == 1
    assert len(runtime.replicas(NS)) == 2


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_rolling_update_on_a_full_machine_replaces_in_place(
    make_runtime, svc, svc_copy, wait_for
) -> None:
    runtime = await make_runtime(replica_slots=1)
    await runtime.apply(spec(svc.model_dir, "iris"))
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 60, "Ready")
    old = {r.name for r in runtime.replicas(NS)}
    await runtime.apply(spec(svc_copy, "iris", generation=2))

    def rolled() -> bool:
        replicas = runtime.replicas(NS)
        return len(replicas) == 1 and replicas[0].ready and replicas[0].name not in old

    await wait_for(rolled, 60, "the new generation to take the only slot")
    assert runtime.status(NS, "iris").pending == 0
