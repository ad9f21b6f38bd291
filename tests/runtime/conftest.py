"""Fixtures for the runtime tests: a real iris model trained here, a broken one, a runtime per test.

The tests run real model-server processes; async tests run on anyio's pytest plugin (asyncio backend),
and they wait for conditions with `wait_for` (a deadline, never a fixed sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pytest

from inferbox.control.events import Event, EventBus, Subscription
from inferbox.runtime.local import LocalRuntime, RuntimeSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Svc:
    """The session's iris SVC on disk (tests/trained.py), some inputs and what it predicts for them."""

    model_dir: Path
    instances: list[list[float]]
    expected: list[int]


@pytest.fixture(scope="session")
def svc(sklearn_dir: Path, iris: Any) -> Svc:
    instances = iris.X[::10]
    expected = joblib.load(sklearn_dir / "model.joblib").predict(instances)
    return Svc(sklearn_dir, instances.tolist(), expected.tolist())


@pytest.fixture(scope="session")
def svc_copy(tmp_path_factory: pytest.TempPathFactory, svc: Svc) -> Path:
    """The same model under another path: a new storageUri, hence a new generation."""
    other = tmp_path_factory.mktemp("iris-v2")
    (other / "model.joblib").write_bytes((svc.model_dir / "model.joblib").read_bytes())
    return other


@pytest.fixture(scope="session")
def broken_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("broken")
    (path / "model.joblib").write_bytes(b"this is not a joblib pickle\x00\x01\x02")
    return path


async def _wait_for(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout: float,
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def _drain(sub: Subscription) -> list[Event]:
    """The events a subscription has received so far."""
    out: list[Event] = []
    while not sub._queue.empty():
        event = sub._queue.get_nowait()
        if event is not None:
            out.append(event)
    return out


WaitFor = Callable[..., Awaitable[Any]]


@pytest.fixture
def wait_for() -> WaitFor:
    """`await wait_for(predicate, timeout, what)`: poll until truthy, fail at the deadline."""
    return _wait_for


@pytest.fixture
def drain() -> Callable[[Subscription], list[Event]]:
    """`drain(subscription)`: the events it has received so far."""
    return _drain


RuntimeFactory = Callable[..., Awaitable[LocalRuntime]]


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[RuntimeFactory]:
    """Start LocalRuntimes (fast polling, data dir under tmp_path); all are closed after the test."""
    made: list[LocalRuntime] = []

    async def make(data_dir: Path | None = None, bus: EventBus | None = None, **kwargs: Any) -> LocalRuntime:
        knobs = RuntimeSettings(
            **{"poll_seconds": 0.2, "stop_grace_seconds": 5.0, "drain_seconds": 5.0, **kwargs}
        )
        runtime = LocalRuntime(data_dir or tmp_path / "data", bus or EventBus(), knobs)
        await runtime.start([])
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.close()
