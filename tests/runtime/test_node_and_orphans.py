"""This machine as a node, /proc readings, and orphan reaping with real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import inferbox
from inferbox.control.events import EventBus
from inferbox.runtime.base import ModelNotRunning, ModelSpec, SpecRefused
from inferbox.runtime.local import LocalRuntime
from inferbox.runtime.local.node import (
    format_memory,
    meminfo,
    process_alive,
    process_cpu_seconds,
    process_rss_bytes,
    process_start_ticks,
)
from inferbox.runtime.local.orphans import OrphanRegistry


def test_format_memory_as_kubernetes_writes_it() -> None:
    assert format_memory(24 * 2**30) == "24Gi"
    assert format_memory(int(23.5 * 2**30)) == "23Gi"
    assert format_memory(512 * 2**20) == "512Mi"
    assert format_memory(2048) == "2Ki"
    assert format_memory(100) == "100"


def test_nodes_describe_this_machine() -> None:
    runtime = LocalRuntime(Path("/nonexistent"), EventBus())
    [node] = runtime.nodes()
    assert node.name == socket.gethostname()
    assert node.status == "Ready"
    assert node.version == inferbox.__version__
    assert node.capacity_cpu == str(os.cpu_count())
    total = meminfo()["MemTotal"]
    assert node.capacity_memory == format_memory(total)
    assert node.capacity_memory.endswith(("Gi", "Mi", "Ti"))
    assert node.allocatable_memory.endswith(("Gi", "Mi", "Ti"))
    assert node.created is not None


def test_proc_readings_of_this_process() -> None:
    pid = os.getpid()
    assert process_alive(pid)
    assert process_start_ticks(pid) is not None
    assert (process_rss_bytes(pid) or 0) > 1_000_000
    assert (process_cpu_seconds(pid) or 0) > 0
    assert not process_alive(2**22 + 12345)  # above pid_max: never a process


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_reap_kills_recorded_processes_that_are_still_ours(tmp_path: Path) -> None:
    registry = OrphanRegistry(tmp_path / "run")
    proc = _sleeper()
    try:
        registry.record(proc.pid, "ns", "m", "m-predictor-abcde")
        assert [r.pid for r in registry.records()] == [proc.pid]
        killed = registry.reap()
        assert [r.pid for r in killed] == [proc.pid]
        assert proc.wait(timeout=5) == -9
        assert registry.records() == []
    finally:
        proc.kill()
        proc.wait()


def test_reap_spares_a_recycled_pid(tmp_path: Path) -> None:
    """A record whose start time does not match the live process (the pid was reused) kills nothing."""
    registry = OrphanRegistry(tmp_path / "run")
    proc = _sleeper()
    try:
        registry.record(proc.pid, "ns", "m", "m-predictor-abcde")
        path = tmp_path / "run" / f"{proc.pid}.json"
        path.write_text(path.read_text().replace('"start_ticks": ', '"start_ticks": 1'))
        assert registry.reap() == []
        assert proc.poll() is None
        assert registry.records() == []
    finally:
        proc.kill()
        proc.wait()


def test_reap_clears_records_of_dead_processes(tmp_path: Path) -> None:
    registry = OrphanRegistry(tmp_path / "run")
    proc = _sleeper()
    registry.record(proc.pid, "ns", "m", "m-predictor-abcde")
    proc.kill()
    proc.wait()
    assert registry.reap() == []
    assert registry.records() == []


@pytest.mark.anyio
async def test_cpu_and_memory_metrics_are_refused(tmp_path: Path, iris_dir: Path) -> None:
    runtime = LocalRuntime(tmp_path, EventBus())
    for metric in ("cpu", "memory"):
        spec = ModelSpec("ns", "m", "sklearn", str(iris_dir), scale_metric=metric)
        with pytest.raises(SpecRefused) as info:
            await runtime.apply(spec)
        assert str(info.value) == (
            f"scaleMetric '{metric}' is not supported on the local runtime; use 'concurrency' or 'rps'"
        )
    with pytest.raises(SpecRefused, match="does not exist"):
        await runtime.apply(ModelSpec("ns", "m", "sklearn", str(tmp_path / "missing")))
    with pytest.raises(SpecRefused, match="maxReplicas"):
        await runtime.apply(ModelSpec("ns", "m", "sklearn", str(iris_dir), min_replicas=3, max_replicas=2))
    assert runtime.status("ns", "m") is None
    assert runtime.replicas() == []
    await runtime.close()


@pytest.mark.anyio
async def test_connect_to_an_unknown_model_fails_at_once(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path, EventBus())
    await runtime.start([])
    try:
        began = time.monotonic()
        with pytest.raises(ModelNotRunning) as info:
            async with runtime.connect("ns", "nope", timeout=5):
                pass
        assert time.monotonic() - began < 1
        assert info.value.retry_after > 0
        assert await runtime.logs("ns", "nope", 10) == []
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Any existing directory will do: these tests never start a replica."""
    return tmp_path_factory.mktemp("model")
