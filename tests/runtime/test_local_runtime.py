"""The local runtime with real model-server replicas serving a real (iris SVC) model.

Every wait is a poll with a deadline; every call to a replica has a bounded timeout, so a hang fails the
test instead of stalling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from inferbox.control import events as ev
from inferbox.runtime.base import FAILED_TO_LOAD, READY, ModelNotRunning, ModelSpec
from inferbox.runtime.client import ReplicaClient
from inferbox.runtime.local import LocalRuntime
from inferbox.runtime.local.node import process_alive

pytestmark = pytest.mark.anyio

NS = "tenant-a"


def spec_for(path: Path, name: str = "iris", **kwargs: object) -> ModelSpec:
    return ModelSpec(NS, name, "sklearn", str(path), **kwargs)  # type: ignore[arg-type]


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=10.0)


def port_is_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


async def predict(http: httpx.AsyncClient, url: str, instances: list[list[float]]) -> list[int]:
    response = await http.post(url, json={"instances": instances})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


@dataclass
class Callers:
    """Concurrent callers in a loop; each call is bounded, so a hung call shows up as a failure."""

    ok: int = 0
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, n: int, call: Callable[[], Awaitable[None]], bound: float = 15.0) -> None:
        async def loop() -> None:
            while not self.stop.is_set():
                try:
                    await asyncio.wait_for(call(), bound)
                    self.ok += 1
                except TimeoutError:
                    self.errors.append("HUNG")
                except Exception as exc:
                    self.errors.append(repr(exc))
                    await asyncio.sleep(0.05)  # pace a failing caller, do not spin

        self.tasks.extend(asyncio.create_task(loop()) for _ in range(n))

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 30)


@pytest.mark.timeout(60)
async def test_serves_predictions_then_deletes(make_runtime, svc, wait_for, drain, monkeypatch) -> None:
    # A control-plane secret in the environment must not reach a replica (models are code).
    monkeypatch.setenv("JWT_SECRET", "do-not-leak")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    bus = ev.EventBus()
    sub = bus.subscribe(maxsize=1000)
    runtime = await make_runtime(bus=bus)
    status = await runtime.apply(spec_for(svc.model_dir))
    assert status.phase in ("Pending", "Loading")
    assert status.port and status.url == f"http://127.0.0.1:{status.port}/v1/models/iris:predict"
    await wait_for(lambda: runtime.status(NS, "iris").phase == READY, 30, "Ready")
    status = runtime.status(NS, "iris")
    assert status.ready and (status.desired, status.ready_replicas, status.total) == (1, 1, 1)
    assert {c.type: (c.status, c.reason) for c in status.conditions}["Ready"] == ("True", "ModelReady")
    assert {c.type for c in status.conditions} >= {"Ready", "PredictorReady"}

    async with client() as http:
        async with runtime.connect(NS, "iris", timeout=5) as base:
            assert base.startswith("http://127.0.0.1:") and base != f"http://127.0.0.1:{status.port}"
            assert await predict(http, f"{base}/v1/models/iris:predict", svc.instances) == svc.expected
        # The stable URL, as a direct caller uses it.
        assert await predict(http, status.url, svc.instances) == svc.expected
        v2 = await http.post(
            f"http://127.0.0.1:{status.port}/v2/models/iris/infer",
            json={
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [len(svc.instances), 4],
                        "datatype": "FP64",
                        "data": svc.instances,
                    }
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == svc.expected

    [replica] = runtime.replicas(NS)
    assert re.fullmatch(r"iris-predictor-[a-z0-9]{5}", replica.name)
    assert replica.phase == "Running" and replica.ready and replica.restarts == 0
    assert replica.labels == {"serving.kserve.io/inferenceservice": "iris", "app": "iris-predictor"}
    assert replica.pid and process_alive(replica.pid)
    assert replica.address and replica.address.startswith("127.0.0.1:")
    environ = Path(f"/proc/{replica.pid}/environ").read_bytes().split(b"\0")
    assert b"OMP_NUM_THREADS=1" in environ
    assert not [v for v in environ if v.startswith(b"JWT_SECRET=")]
    await wait_for(lambda: (runtime.replicas(NS)[0].memory_bytes or 0) > 10_000_000, 5, "memory reading")
    await wait_for(lambda: runtime.replicas(NS)[0].cpu_millicores is not None, 5, "cpu reading")
    assert runtime.replicas("other-tenant") == []

    lines = await runtime.logs(NS, "iris", 100)
    assert lines and all(line.startswith(f"[{replica.name}] ") for line in lines)
    own = await runtime.logs(NS, "iris", 100, replica=replica.name)
    assert len(own) == len(lines) and not own[0].startswith("[")
    assert len(await runtime.logs(NS, "iris", 1)) == 1

    changes = [e.data for e in drain(sub) if e.type == ev.MODEL_STATUS_CHANGED]
    assert changes[-1] == {
        "phase": "Ready",
        "ready": True,
        "replicas": {"desired": 1, "ready": 1, "total": 1, "pending": 0},
        "restarts": 0,
    }
    assert any(c["phase"] in ("Pending", "Loading") for c in changes[:-1])

    await runtime.delete(NS, "iris")
    assert runtime.status(NS, "iris") is None
    assert runtime.replicas() == []
    assert not process_alive(replica.pid)
    assert port_is_closed(status.port)
    assert port_is_closed(int(replica.address.rsplit(":", 1)[1]))
    with pytest.raises(ModelNotRunning):
        async with runtime.connect(NS, "iris", timeout=1):
            pass
    assert not list((runtime.data_dir / "run").glob("*.json"))


@pytest.mark.timeout(60)
async def test_failed_to_load_reports_the_loader_message_and_does_not_restart(
    make_runtime, svc, broken_model_dir, wait_for
) -> None:
    runtime = await make_runtime()
    await runtime.apply(spec_for(broken_model_dir, "broken"))
    status = await wait_for(
        lambda: (s := runtime.status(NS, "broken")) and s.phase == FAILED_TO_LOAD and s, 30, "FailedToLoad"
    )
    assert not status.ready and status.reason == "FailedToLoad" and status.restarts == 0
    lines = await runtime.logs(NS, "broken", 1000)
    failures = [line for line in lines if "inferbox-model-server: failed to load model:" in line]
    assert len(failures) == 1
    assert status.message and failures[0].endswith(status.message)
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert (ready.status, ready.reason, ready.message) == ("False", "FailedToLoad", status.message)
    # The replica stays failed: no process, no restart (it waits for a new spec).
    [replica] = runtime.replicas(NS)
    assert replica.phase == "Error" and replica.pid is None and replica.restarts == 0
    began = time.monotonic()
    with pytest.raises(ModelNotRunning, match="failed to load"):
        async with runtime.connect(NS, "broken", timeout=10):
            pass
    assert time.monotonic() - began < 1

    # A fixed spec (new storageUri, new generation) loads.
    await runtime.apply(spec_for(svc.model_dir, "broken", generation=2))
    await wait_for(lambda: runtime.status(NS, "broken").phase == READY, 30, "Ready after the fix")
    assert [r.phase for r in runtime.replicas(NS)] == ["Running"]


@pytest.mark.timeout(60)
async def test_killed_replica_is_restarted_and_callers_never_hang(make_runtime, svc, wait_for, drain) -> None:
    bus = ev.EventBus()
    sub = bus.subscribe(maxsize=10_000)
    runtime = await make_runtime(bus=bus)
    status = await runtime.apply(spec_for(svc.model_dir))
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 30, "Ready")
    [before] = runtime.replicas(NS)

    async with client() as http:
        callers = Callers()

        async def via_connect() -> None:
            async with runtime.connect(NS, "iris", timeout=5) as base:
                await predict(http, f"{base}/v1/models/iris:predict", svc.instances)

        async def via_url() -> None:
            async with httpx.AsyncClient(trust_env=False, timeout=5.0) as fresh:
                await predict(fresh, status.url, svc.instances)

        callers.start(2, via_connect)
        callers.start(2, via_url)
        await wait_for(lambda: callers.ok > 10, 10, "calls before the kill")
        os.kill(before.pid, signal.SIGKILL)
        await wait_for(
            lambda: (r := runtime.replicas(NS)) and r[0].ready and r[0].pid != before.pid,
            30,
            "a restarted replica",
        )
        ok_after_restart = callers.ok
        await wait_for(lambda: callers.ok > ok_after_restart + 10, 10, "calls after the restart")
        await callers.finish()

    assert "HUNG" not in callers.errors
    [after] = runtime.replicas(NS)
    assert after.name == before.name and after.restarts == 1
    assert runtime.status(NS, "iris").restarts == 1
    reasons = [e.data.get("reason") for e in drain(sub) if e.type == ev.MODEL_STATUS_CHANGED]
    assert "CrashLoopBackOff" in reasons
    assert any("restarting in 1s" in line for line in await runtime.logs(NS, "iris", 1000))


@pytest.mark.timeout(90)
async def test_the_back_off_starts_over_for_a_replica_that_served(make_runtime, svc, wait_for) -> None:
    """Three crashes in a row, each after the replica was Ready and served: 1 s each time, not 1, 2, 4 s.
    A replica that crashes without serving keeps doubling (that is a crash loop)."""
    runtime = await make_runtime()
    await runtime.apply(spec_for(svc.model_dir))
    async with client() as http:
        delays = []
        for _ in range(3):
            await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 30, "Ready")
            async with runtime.connect(NS, "iris", timeout=5) as base:
                assert await predict(http, f"{base}/v1/models/iris:predict", svc.instances) == svc.expected
            [replica] = runtime.replicas(NS)
            os.kill(replica.pid, signal.SIGKILL)
            await wait_for(lambda: "restarting in" in (runtime.status(NS, "iris").message or ""), 10, "crash")
            delays.append(runtime.status(NS, "iris").message.rsplit("restarting in ", 1)[1])
    assert delays == ["1s"] * 3

    unserved = []
    for _ in range(2):
        await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 30, "Ready")
        [replica] = runtime.replicas(NS)
        os.kill(replica.pid, signal.SIGKILL)
        await wait_for(lambda: "restarting in" in (runtime.status(NS, "iris").message or ""), 10, "crash")
        unserved.append(runtime.status(NS, "iris").message.rsplit("restarting in ", 1)[1])
    # Counting on from the last crash, which came after serving (1 s).
    assert unserved == ["2s", "4s"]


@pytest.mark.timeout(60)
async def test_a_call_that_meets_a_dead_replica_waits_for_its_restart(make_runtime, svc, wait_for) -> None:
    """What the gateway and the API's predict do (ReplicaClient.call over connect()): a replica killed
    a moment before is not picked again for the retry; the call waits for the restarted one."""
    runtime = await make_runtime()
    await runtime.apply(spec_for(svc.model_dir))
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 30, "Ready")
    [before] = runtime.replicas(NS)
    calls = ReplicaClient(timeout=10.0)
    body = json.dumps({"instances": svc.instances}).encode()
    try:
        os.kill(before.pid, signal.SIGKILL)
        answer = await calls.call(
            lambda: runtime.connect(NS, "iris", timeout=30), "POST", "/v1/models/iris:predict", body
        )
        assert answer.status == 200
        assert json.loads(answer.body)["predictions"] == svc.expected
        [after] = runtime.replicas(NS)
        assert after.pid != before.pid
    finally:
        await calls.close()


async def scaled_to_zero_model(make_runtime, svc, wait_for) -> tuple[LocalRuntime, ev.Subscription, str]:
    """A minReplicas-0 model that has served, then scaled to zero (1 s idle window)."""
    bus = ev.EventBus()
    sub = bus.subscribe(maxsize=10_000)
    runtime = await make_runtime(bus=bus, scale_to_zero_seconds=1)
    status = await runtime.apply(spec_for(svc.model_dir, min_replicas=0, max_replicas=1))
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 30, "Ready")
    await wait_for(lambda: is_scaled_to_zero(runtime), 20, "scale to zero")
    return runtime, sub, status.url


def is_scaled_to_zero(runtime: LocalRuntime) -> bool:
    s = runtime.status(NS, "iris")
    return s.desired == 0 and s.total == 0 and not runtime.replicas(NS)


@pytest.mark.timeout(90)
async def test_scales_to_zero_and_connect_wakes_it(make_runtime, svc, wait_for, drain) -> None:
    runtime, sub, _ = await scaled_to_zero_model(make_runtime, svc, wait_for)
    idle = runtime.status(NS, "iris")
    assert idle.phase == READY and idle.ready and idle.ready_replicas == 0
    # The departed replica's output is still there to read.
    assert await runtime.logs(NS, "iris", 100)

    # connect() wakes the model and waits for the replica.
    async with client() as http, runtime.connect(NS, "iris", timeout=30) as base:
        assert await predict(http, f"{base}/v1/models/iris:predict", svc.instances) == svc.expected
    await wait_for(lambda: is_scaled_to_zero(runtime), 20, "scale to zero again")

    scaled = [e.data for e in drain(sub) if e.type == ev.MODEL_SCALED]
    assert [d["reason"] for d in scaled] == ["ScaleToZero", "Activation", "ScaleToZero"]
    assert {"from": 1, "to": 0, "reason": "ScaleToZero"}.items() <= scaled[0].items()
    assert {"from": 0, "to": 1, "reason": "Activation"}.items() <= scaled[1].items()


@pytest.mark.timeout(90)
async def test_scaled_to_zero_the_stable_url_wakes_it(make_runtime, svc, wait_for, drain) -> None:
    """A plain POST to the stable URL: the connection waits in the listen queue while a replica starts,
    and the request is answered once the model is loaded (not with a 503 while it loads)."""
    runtime, sub, url = await scaled_to_zero_model(make_runtime, svc, wait_for)
    async with httpx.AsyncClient(trust_env=False, timeout=30.0) as fresh:
        assert await predict(fresh, url, svc.instances) == svc.expected
    assert runtime.status(NS, "iris").desired == 1
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 10, "the woken replica ready")
    reasons = [e.data["reason"] for e in drain(sub) if e.type == ev.MODEL_SCALED]
    assert reasons == ["ScaleToZero", "Activation"]


@pytest.mark.timeout(240)
async def test_load_adds_replicas_up_to_max_and_they_go_after_it(make_runtime, svc, wait_for, drain) -> None:
    bus = ev.EventBus()
    sub = bus.subscribe(maxsize=10_000)
    runtime = await make_runtime(bus=bus, scale_down_delay_seconds=1)
    await runtime.apply(spec_for(svc.model_dir, min_replicas=1, max_replicas=3, scale_target=1))
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 1, 30, "Ready")
    # Larger requests keep each one in the server longer, so the load shows as concurrency.
    instances = svc.instances * 200

    async with client() as http:
        callers = Callers()

        async def call() -> None:
            async with runtime.connect(NS, "iris", timeout=10) as base:
                await predict(http, f"{base}/v1/models/iris:predict", instances)

        callers.start(8, call)
        await wait_for(lambda: runtime.status(NS, "iris").desired == 3, 45, "3 desired replicas")
        # Starting two replicas takes seconds on a quiet machine, far longer beside a busy suite.
        await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 3, 90, "3 ready replicas")
        assert runtime.status(NS, "iris").desired == 3
        await callers.finish()
    assert callers.errors == []

    await wait_for(lambda: len(runtime.replicas(NS)) == 1, 30, "scale down to 1")
    assert runtime.status(NS, "iris").desired == 1 and runtime.status(NS, "iris").total == 1
    scaled = [e.data for e in drain(sub) if e.type == ev.MODEL_SCALED]
    assert max(d["to"] for d in scaled) == 3
    assert any(d["reason"] == "ScaleUp" and d["metric"] == "concurrency" for d in scaled)
    assert scaled[-1]["reason"] == "ScaleDown" and scaled[-1]["to"] == 1


@pytest.mark.timeout(90)
async def test_rolling_update_fails_no_request(make_runtime, svc, svc_copy, wait_for) -> None:
    runtime = await make_runtime()
    await runtime.apply(spec_for(svc.model_dir, min_replicas=2, max_replicas=2))
    await wait_for(lambda: runtime.status(NS, "iris").ready_replicas == 2, 30, "Ready")
    old = {r.name: r.pid for r in runtime.replicas(NS)}

    async with client() as http:
        callers = Callers()

        async def call() -> None:
            async with runtime.connect(NS, "iris", timeout=10) as base:
                assert await predict(http, f"{base}/v1/models/iris:predict", svc.instances) == svc.expected

        callers.start(4, call)
        await wait_for(lambda: callers.ok > 20, 10, "calls before the update")
        await runtime.apply(spec_for(svc_copy, min_replicas=2, max_replicas=2, generation=2))

        def rolled() -> bool:
            replicas = runtime.replicas(NS)
            return (
                len(replicas) == 2
                and all(r.ready and r.name not in old for r in replicas)
                and not any(process_alive(pid) for pid in old.values() if pid)
            )

        await wait_for(rolled, 60, "the new generation to replace the old")
        ok_after = callers.ok
        await wait_for(lambda: callers.ok > ok_after + 20, 10, "calls after the update")
        await callers.finish()

    assert callers.errors == []
    assert runtime.status(NS, "iris").phase == READY


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    from inferbox.control.events import EventBus
    from inferbox.runtime.base import ModelSpec
    from inferbox.runtime.local import LocalRuntime, RuntimeSettings

    async def main() -> None:
        runtime = LocalRuntime(Path(sys.argv[1]), EventBus(), RuntimeSettings(poll_seconds=0.2))
        await runtime.start([])
        status = await runtime.apply(ModelSpec("tenant-a", "iris", "sklearn", sys.argv[2]))
        while not runtime.status("tenant-a", "iris").ready:
            await asyncio.sleep(0.05)
        [replica] = runtime.replicas()
        print(json.dumps({"pid": replica.pid, "port": status.port}), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.timeout(90)
async def test_replicas_of_a_killed_runtime_stop_and_a_new_one_takes_their_port(
    make_runtime, svc, tmp_path, wait_for
) -> None:
    data_dir = tmp_path / "data"
    crashed = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(data_dir), str(svc.model_dir)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(crashed.stdout.readline), 60)
        info = json.loads(line)
        assert process_alive(info["pid"])
        # The runtime dies without closing anything (SIGKILL): the kernel tells its replica, which
        # stops by itself (PR_SET_PDEATHSIG) instead of answering on its URL until the next start.
        crashed.kill()
        crashed.wait()
        await wait_for(lambda: not process_alive(info["pid"]), 30, "the orphaned replica to exit")
        assert port_is_closed(info["port"])

        runtime = await make_runtime(data_dir=data_dir)
        # Whatever record the dead runtime left is cleared by the new one's start.
        assert not list((data_dir / "run").glob("*.json"))
        status = await runtime.apply(spec_for(svc.model_dir, port=info["port"]))
        assert status.port == info["port"] and status.phase != FAILED_TO_LOAD
        await wait_for(lambda: runtime.status(NS, "iris").ready, 30, "Ready again")
        async with client() as http:
            assert await predict(http, status.url, svc.instances) == svc.expected
    finally:
        with contextlib.suppress(ProcessLookupError):
            crashed.kill()
        crashed.wait()


@pytest.mark.timeout(90)
async def test_a_restarted_runtime_serves_on_the_same_url(make_runtime, svc, tmp_path, wait_for) -> None:
    data_dir = tmp_path / "data"
    first = await make_runtime(data_dir=data_dir)
    status = await first.apply(spec_for(svc.model_dir))
    await wait_for(lambda: first.status(NS, "iris").ready, 30, "Ready")
    async with client() as http:
        assert await predict(http, status.url, svc.instances) == svc.expected
        await first.close()
        assert port_is_closed(status.port)

        # The control plane stored the port; a new runtime brings the model back on it.
        stored = spec_for(svc.model_dir, port=status.port)
        second = await make_runtime(data_dir=data_dir)
        await second.start([stored])
        assert second.status(NS, "iris").url == status.url
        await wait_for(lambda: second.status(NS, "iris").ready, 30, "Ready after the restart")
        assert await predict(http, status.url, svc.instances) == svc.expected
