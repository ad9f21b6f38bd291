"""The model supervisor's collaborators on their own: log rings, routing, the scale-from-zero watcher,
status and conditions, usage readings. No model-server process: fake replicas and fake models stand in
(test_local_runtime.py runs them all together with real replicas)."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from inferbox.runtime.base import FAILED_TO_LOAD, LOADING, PENDING, READY, ModelNotRunning, ModelSpec
from inferbox.runtime.local import sockets
from inferbox.runtime.local.logs import LogRings
from inferbox.runtime.local.replica import CRASH_LOOP, RUNNING, TERMINATING, Replica
from inferbox.runtime.local.routing import ReplicaRouter
from inferbox.runtime.local.scale_from_zero import ScaleFromZeroWatcher
from inferbox.runtime.local.slots import ReplicaSlots
from inferbox.runtime.local.status import StatusReporter
from inferbox.runtime.local.usage import UsageMeter

SPEC = ModelSpec("ns", "iris", "sklearn", "/models/iris")


@dataclass
class FakeReplica:
    """What routing and status read of a replica."""

    name: str
    ready: bool = True
    stopping: bool = False
    outstanding: int = 0
    picks: int = 0
    phase: str = RUNNING
    generation: int = 1
    restarts: int = 0
    last_exit: int | None = None
    restart_in: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    address: str | None = "127.0.0.1:1"
    has_process: bool = True
    pid: int | None = 4242
    usage: Any = None
    unreachable_at: float | None = None

    def suspected(self, now: float) -> bool:
        return self.unreachable_at is not None and now - self.unreachable_at < 1.0

    def hold(self) -> None:
        self.outstanding += 1
        self.picks += 1

    def release(self) -> None:
        self.outstanding -= 1


@dataclass
class FakeModel:
    """The state a collaborator reads of its model (each reads part of it)."""

    spec: ModelSpec = SPEC
    replicas: list[Replica] = field(default_factory=list)
    desired: int = 1
    pending: int = 0
    slots: ReplicaSlots = field(default_factory=lambda: ReplicaSlots(4))
    restarts: int = 0
    failure: str | None = None
    model_path: Path | None = Path("/models/iris")
    idle_ready: bool = False
    port: int | None = 20001
    grpc_port: int | None = None
    closing: bool = False
    sock: socket.socket | None = None
    last_request_at: float = 0.0
    activations: int = 0

    def activate(self) -> None:
        self.activations += 1


def replicas(*fakes: FakeReplica) -> list[Replica]:
    return cast(list[Replica], list(fakes))


class Bus:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict[str, Any] | None]] = []

    def publish(self, type: str, namespace: str, name: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((type, namespace, name, data))


# -- log rings ---------------------------------------------------------------------------------------


def test_log_rings_interleave_replicas_in_arrival_order_and_keep_the_last_lines() -> None:
    rings = LogRings(lines_kept=2, departed_kept=5)
    for name, line in [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4"), ("b", "5")]:
        rings.append(name, line)
    assert rings.read(10) == ["[b] 2", "[a] 3", "[a] 4", "[b] 5"]  # a's "1" fell out of its ring
    assert rings.read(2) == ["[a] 4", "[b] 5"]
    assert rings.read(10, replica="a") == ["3", "4"]
    assert rings.read(1, replica="a") == ["4"]
    assert rings.read(0) == [] and rings.read(-1, replica="a") == []
    assert rings.read(10, replica="nobody") == []


def test_log_rings_keep_only_the_last_departed_replicas() -> None:
    rings = LogRings(lines_kept=10, departed_kept=2)
    for name in ("a", "b", "c"):
        rings.append(name, f"hello from {name}")
        rings.depart(name)
    rings.append("d", "still here")
    assert rings.read(10) == ["[b] hello from b", "[c] hello from c", "[d] still here"]


# -- routing -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_router_holds_the_least_busy_ready_replica() -> None:
    busy, idle, loading, draining = (
        FakeReplica("busy", outstanding=3),
        FakeReplica("idle", outstanding=1),
        FakeReplica("loading", ready=False),
        FakeReplica("draining", stopping=True),
    )
    model = FakeModel(replicas=replicas(busy, idle, loading, draining))
    router = ReplicaRouter(model, asyncio.get_running_loop())
    got = await router.acquire(timeout=1)
    assert got is cast(Replica, idle) and idle.outstanding == 2 and model.last_request_at > 0
    model.last_request_at = 0.0
    router.release(got)
    assert idle.outstanding == 1 and model.last_request_at > 0
    # Equally busy: the one picked less often takes its turn.
    idle.outstanding = busy.outstanding = 0
    assert router.pick() is cast(Replica, busy)
    assert model.activations == 0


@pytest.mark.anyio
async def test_the_router_activates_waits_and_is_woken_by_notify() -> None:
    model = FakeModel(desired=0)
    router = ReplicaRouter(model, asyncio.get_running_loop())
    waiter = asyncio.create_task(router.acquire(timeout=10))
    await asyncio.sleep(0.05)
    assert model.activations == 1 and not waiter.done()
    replica = FakeReplica("r")
    model.replicas.append(cast(Replica, replica))
    began = time.monotonic()
    router.notify()
    assert await asyncio.wait_for(waiter, 2) is cast(Replica, replica)
    assert time.monotonic() - began < 1


@pytest.mark.anyio
async def test_a_replica_a_call_could_not_reach_is_left_out_for_a_moment() -> None:
    gone, other = FakeReplica("gone"), FakeReplica("other", outstanding=5)
    model = FakeModel(replicas=replicas(gone, other))
    router = ReplicaRouter(model, asyncio.get_running_loop())
    gone.unreachable_at = time.monotonic()
    assert router.pick() is cast(Replica, other)  # busier, but reachable
    model.replicas.remove(cast(Replica, other))
    # Alone and suspected: the caller waits until the suspicion lapses (or the replica restarts).
    waiter = asyncio.create_task(router.acquire(timeout=5))
    await asyncio.sleep(0.2)
    assert not waiter.done() and model.activations >= 1
    assert await asyncio.wait_for(waiter, 3) is cast(Replica, gone)


@pytest.mark.anyio
async def test_the_router_gives_up_on_failure_deletion_and_deadline() -> None:
    model = FakeModel(failure="bad pickle")
    router = ReplicaRouter(model, asyncio.get_running_loop())
    with pytest.raises(ModelNotRunning, match="model ns/iris failed to load: bad pickle") as info:
        await router.acquire(timeout=10)
    assert info.value.retry_after == 30
    model.failure, model.closing = None, True
    with pytest.raises(ModelNotRunning, match="is being deleted"):
        await router.acquire(timeout=10)
    model.closing = False
    began = time.monotonic()
    with pytest.raises(ModelNotRunning, match=r"became ready within 0\.2s") as info:
        await router.acquire(timeout=0.2)
    assert 0.15 < time.monotonic() - began < 2 and info.value.retry_after == 5


# -- the scale-from-zero watcher ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_waiting_connection_on_the_stable_socket_activates_a_model_scaled_to_zero() -> None:
    sock = sockets.listen("127.0.0.1", 0)
    try:
        model = FakeModel(desired=0, sock=sock)
        watcher = ScaleFromZeroWatcher(model, asyncio.get_running_loop())
        watcher.update()
        assert watcher.watching
        with socket.create_connection(("127.0.0.1", sockets.port_of(sock)), timeout=1):
            deadline = time.monotonic() + 2
            while not model.activations and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the queued connection must not activate it again and again
        assert model.activations == 1 and not watcher.watching
    finally:
        sock.close()


@pytest.mark.anyio
@pytest.mark.parametrize("state", ["replica wanted", "failed", "closing", "no socket"])
async def test_the_watcher_watches_only_while_no_replica_is_wanted(state: str) -> None:
    sock = sockets.listen("127.0.0.1", 0)
    try:
        model = FakeModel(desired=0, sock=sock)
        watcher = ScaleFromZeroWatcher(model, asyncio.get_running_loop())
        watcher.update()
        assert watcher.watching
        if state == "replica wanted":
            model.desired = 1
        elif state == "failed":
            model.failure = "bad pickle"
        elif state == "closing":
            model.closing = True
        else:
            model.sock = None
        watcher.update()
        assert not watcher.watching
    finally:
        sock.close()


# -- status and conditions ---------------------------------------------------------------------------


def conditions(reporter: StatusReporter) -> dict[str, tuple[str, str, datetime]]:
    return {c.type: (c.status, c.reason, c.last_transition_time) for c in reporter.status().conditions}


def test_the_phase_follows_the_replicas() -> None:
    model = FakeModel()
    reporter = StatusReporter(model, Bus(), "0.0.0.0")
    assert reporter.phase() == PENDING
    model.replicas = replicas(FakeReplica("r", ready=False, phase="ContainerCreating"))
    assert reporter.phase() == LOADING
    model.replicas = replicas(FakeReplica("r"))
    assert reporter.phase() == READY
    model.replicas, model.idle_ready = [], True
    assert reporter.phase() == READY
    model.failure = "bad pickle"
    assert reporter.phase() == FAILED_TO_LOAD
    status = reporter.status()
    assert status.url == "http://127.0.0.1:20001/v1/models/iris:predict"
    assert (status.reason, status.message) == ("FailedToLoad", "bad pickle")
    assert status.error == "bad pickle"


def test_replicas_without_a_slot_are_pending_and_unschedulable() -> None:
    model = FakeModel(pending=2, slots=ReplicaSlots(3))
    reporter = StatusReporter(model, Bus(), "127.0.0.1")
    status = reporter.status()
    assert (status.phase, status.pending, status.reason) == (PENDING, 2, "Unschedulable")
    assert status.message == model.slots.explain(2) and "all 3 replica slots" in status.message
    assert status.error is None
    # Serving with some replicas and waiting for the rest: Ready, and still says why.
    model.replicas, model.pending = replicas(FakeReplica("r")), 1
    status = reporter.status()
    assert (status.phase, status.ready, status.reason) == (READY, True, "Unschedulable")
    # A failure says more than a lack of room.
    model.failure = "bad pickle"
    assert reporter.status().reason == "FailedToLoad"


def test_conditions_keep_their_transition_time_while_their_value_stays() -> None:
    model = FakeModel(replicas=replicas(FakeReplica("r", ready=False, phase="ContainerCreating")))
    bus = Bus()
    reporter = StatusReporter(model, bus, "127.0.0.1")
    reporter.record()
    loading = conditions(reporter)
    assert loading["Ready"][:2] == ("False", "ModelLoading")
    # Another not-ready state: the reason changes, the transition time does not.
    model.replicas = replicas(FakeReplica("r", ready=False, phase=CRASH_LOOP, last_exit=1, restart_in=2.0))
    reporter.record()
    crashing = conditions(reporter)
    assert crashing["Ready"] == ("False", "CrashLoopBackOff", loading["Ready"][2])
    time.sleep(0.002)  # a later transition shows a later time
    model.restarts = 1
    model.replicas = replicas(FakeReplica("r"))
    reporter.record()
    ready = conditions(reporter)
    assert ready["Ready"][:2] == ("True", "ModelReady") and ready["Ready"][2] > loading["Ready"][2]
    assert ready["LatestDeploymentReady"][:2] == ("True", "ModelReady")
    # status() alone only reads: the times recorded stay those of the last record().
    time.sleep(0.002)
    model.replicas = []
    assert conditions(reporter)["Ready"][0] == "False"
    assert conditions(reporter)["Ready"][2] > ready["Ready"][2]
    reporter.record()

    published = [data for type_, _, _, data in bus.events if type_ == "model.statusChanged"]
    assert [d and d["phase"] for d in published] == ["Loading", "Loading", "Ready", "Pending"]
    assert published[1] and published[1]["reason"] == "CrashLoopBackOff"
    assert published[1]["message"] == "replica r exited with code 1; restarting in 2s"


def test_an_unchanged_status_is_published_once_and_nothing_while_closing() -> None:
    model = FakeModel(replicas=replicas(FakeReplica("r")))
    bus = Bus()
    reporter = StatusReporter(model, bus, "127.0.0.1")
    reporter.record()
    reporter.record()
    assert len(bus.events) == 1
    model.closing = True
    model.replicas = []
    reporter.record()
    assert len(bus.events) == 1


def test_replica_infos_read_like_pods() -> None:
    usage = UsageMeter(cast(httpx.AsyncClient, None))
    usage.cpu_millicores, usage.memory_bytes = 250, 123_000_000
    gone = FakeReplica("iris-predictor-b", phase=TERMINATING, ready=False, has_process=False, pid=None)
    model = FakeModel(replicas=replicas(FakeReplica("iris-predictor-a", usage=usage), gone))
    gone.usage = UsageMeter(cast(httpx.AsyncClient, None))
    running, terminating = StatusReporter(model, Bus(), "127.0.0.1").replica_infos()
    assert (running.name, running.namespace, running.model, running.phase) == (
        "iris-predictor-a",
        "ns",
        "iris",
        RUNNING,
    )
    assert (running.cpu_millicores, running.memory_bytes, running.address) == (
        250,
        123_000_000,
        "127.0.0.1:1",
    )
    assert running.labels == {"serving.kserve.io/inferenceservice": "iris", "app": "iris-predictor"}
    assert (terminating.address, terminating.pid, terminating.cpu_millicores) == (None, None, None)


# -- usage readings ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_usage_turns_two_stats_readings_into_concurrency_and_rps() -> None:
    answers = iter(
        [
            {"requests": 10, "busySeconds": 1.0, "inflight": 0},
            {"requests": 30, "busySeconds": 4.0, "inflight": 2},
            {"requests": 30, "busySeconds": 4.0, "inflight": 0},
            {"requests": 5, "busySeconds": 0.1},  # a restarted process: counters start over
        ]
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=next(answers)))
    async with httpx.AsyncClient(transport=transport) as http:
        meter = UsageMeter(http)
        first = await meter.poll("http://127.0.0.1:1", now=100.0, timeout=1)
        assert first is not None and (first.requests, first.active) == (10, False)
        assert (meter.concurrency, meter.rps) == (0.0, 0.0)
        second = await meter.poll("http://127.0.0.1:1", now=102.0, timeout=1)
        assert second is not None and second.active and meter.inflight == 2
        assert (meter.concurrency, meter.rps) == (1.5, 10.0)
        quiet = await meter.poll("http://127.0.0.1:1", now=104.0, timeout=1)
        assert quiet is not None and not quiet.active and (meter.concurrency, meter.rps) == (0.0, 0.0)
        restarted = await meter.poll("http://127.0.0.1:1", now=106.0, timeout=1)
        assert restarted is not None and restarted.requests == 5 and meter.rps == 0.0


@pytest.mark.anyio
async def test_unreadable_stats_are_no_reading() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"requests": "many"}))
    async with httpx.AsyncClient(transport=transport) as http:
        assert await UsageMeter(http).poll("http://127.0.0.1:1", now=1.0, timeout=1) is None
