"""Adaptive batching: the Batcher itself (in-process, with plain functions as the model) and batching
in a real replica under concurrent load."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import ServerProcess
from trained import Iris

from inferbox.server.batching import Batcher

pytestmark = pytest.mark.timeout(60)

# A wait long enough that a test would time out if the batcher ever used it where it must not.
FOREVER = 3600.0


class RecordingModel:
    """Doubles its input and records the batch sizes it was called with. Rows with a negative first
    value are "bad input": the call raises, like a framework rejecting data."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.gate = gate

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self.gate is not None:
            self.gate.wait(timeout=30)
        self.calls.append(len(x))
        if (x[:, 0] < 0).any():
            raise ValueError("negative value")
        return [x * 2, x.sum(axis=1)]


def rows(*values: float) -> np.ndarray:
    return np.array([[v, v + 0.5] for v in values])


def test_lone_request_is_dispatched_without_waiting() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher = Batcher(model, max_batch_size=32, max_batch_wait=FOREVER)
        doubled, sums = await batcher.predict(rows(1, 2), expected=False)
        np.testing.assert_array_equal(doubled, rows(1, 2) * 2)
        np.testing.assert_array_equal(sums, [2.5, 4.5])
        # Announced and arrived: nobody else is coming, so no wait either.
        batcher.expect()
        await batcher.predict(rows(3), expected=True)
        assert model.calls == [2, 1]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_requests_queued_behind_a_running_batch_go_out_together() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        model = RecordingModel(gate)
        batcher = Batcher(model, max_batch_size=32, max_batch_wait=FOREVER)
        first = asyncio.ensure_future(batcher.predict(rows(0)))
        await asyncio.sleep(0)  # first is now running (blocked on the gate) in the worker
        others = [asyncio.ensure_future(batcher.predict(rows(*range(i, i + 1 + i % 3)))) for i in range(1, 9)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(first, *others)
        assert model.calls[0] == 1
        assert model.calls[1:] == [sum(1 + i % 3 for i in range(1, 9))]  # one call for all eight
        for i, (doubled, _) in enumerate(results[1:], start=1):
            np.testing.assert_array_equal(doubled, rows(*range(i, i + 1 + i % 3)) * 2)
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_batches_respect_max_batch_size_and_never_split_a_request() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        model = RecordingModel(gate)
        batcher = Batcher(model, max_batch_size=4, max_batch_wait=FOREVER)
        blocker = asyncio.ensure_future(batcher.predict(rows(0)))
        await asyncio.sleep(0)
        sizes = [1, 1, 3, 1, 6, 2]
        queued = [asyncio.ensure_future(batcher.predict(rows(*range(n)))) for n in sizes]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(blocker, *queued)
        # 1+1 (3 would overflow), 3+1, 6 alone (bigger than the limit), 2.
        assert model.calls == [1, 2, 4, 6, 2]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_bad_request_fails_alone() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        model = RecordingModel(gate)
        seen: list[tuple[int, int]] = []
        batcher = Batcher(
            model, max_batch_size=32, max_batch_wait=FOREVER, on_batch=lambda r, n: seen.append((r, n))
        )
        blocker = asyncio.ensure_future(batcher.predict(rows(0)))
        await asyncio.sleep(0)
        good_a = asyncio.ensure_future(batcher.predict(rows(1, 2)))
        bad = asyncio.ensure_future(batcher.predict(rows(-1)))
        good_b = asyncio.ensure_future(batcher.predict(rows(3)))
        await asyncio.sleep(0)
        gate.set()
        await blocker
        np.testing.assert_array_equal((await good_a)[0], rows(1, 2) * 2)
        np.testing.assert_array_equal((await good_b)[0], rows(3) * 2)
        with pytest.raises(ValueError, match="negative value"):
            await bad
        # The combined call failed, then each member ran alone.
        assert model.calls == [1, 4, 2, 1, 1]
        assert seen == [(1, 1), (4, 3), (2, 1), (1, 1), (1, 1)]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_open_batch_waits_for_announced_requests() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher = Batcher(model, max_batch_size=32, max_batch_wait=FOREVER)
        batcher.expect()
        batcher.expect()
        batcher.expect()
        first = asyncio.ensure_future(batcher.predict(rows(1), expected=True))
        for _ in range(20):
            await asyncio.sleep(0)
        assert model.calls == []  # two more were announced: the batch stays open
        second = asyncio.ensure_future(batcher.predict(rows(2), expected=True))
        await asyncio.sleep(0)
        assert model.calls == []
        batcher.forget()  # the third gave up (e.g. its body was malformed): dispatch now
        await asyncio.gather(first, second)
        assert model.calls == [2]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_open_batch_waits_at_most_max_batch_wait() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher = Batcher(model, max_batch_size=32, max_batch_wait=0.005)
        batcher.expect()  # announced but never arrives
        batcher.expect()
        await batcher.predict(rows(1), expected=True)
        assert model.calls == [1]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_full_batch_does_not_wait_for_announced_requests() -> None:
    async def scenario() -> None:
        model = RecordingModel()
        batcher = Batcher(model, max_batch_size=2, max_batch_wait=FOREVER)
        for _ in range(5):
            batcher.expect()
        await batcher.predict(rows(1, 2), expected=True)
        assert model.calls == [2]

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_only_matching_arrays_are_concatenated() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        model = RecordingModel(gate)
        seen: list[tuple[int, int]] = []
        batcher = Batcher(
            model, max_batch_size=32, max_batch_wait=FOREVER, on_batch=lambda r, n: seen.append((r, n))
        )
        blocker = asyncio.ensure_future(batcher.predict(rows(0)))
        await asyncio.sleep(0)
        floats_a = asyncio.ensure_future(batcher.predict(rows(1)))
        ints = asyncio.ensure_future(batcher.predict(np.array([[2, 3]])))
        wide = asyncio.ensure_future(batcher.predict(np.array([[1.0, 2.0, 3.0]])))
        floats_b = asyncio.ensure_future(batcher.predict(rows(4, 5)))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(blocker, floats_a, ints, wide, floats_b)
        # The float rows of width 2 go together; the ints and the wide row each run alone.
        assert model.calls == [1, 3, 1, 1]
        assert seen == [(1, 1), (3, 2), (1, 1), (1, 1)]
        assert (await ints)[0].dtype == np.int64  # not silently converted by concatenation
        np.testing.assert_array_equal((await floats_b)[0], rows(4, 5) * 2)
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_close_drains_queued_requests() -> None:
    async def scenario() -> None:
        gate = threading.Event()
        model = RecordingModel(gate)
        batcher = Batcher(model, max_batch_size=32, max_batch_wait=FOREVER)
        batcher.expect()  # would hold the batch open, but closing stops waiting
        futures = [asyncio.ensure_future(batcher.predict(rows(i))) for i in range(5)]
        await asyncio.sleep(0)
        gate.set()
        await batcher.close()
        assert all(f.done() for f in futures)
        assert sum(model.calls) == 5

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_batch_callback_reports_rows_and_requests() -> None:
    async def scenario() -> None:
        seen: list[tuple[int, int]] = []
        batcher = Batcher(RecordingModel(), on_batch=lambda r, n: seen.append((r, n)))
        await batcher.predict(rows(1, 2, 3))
        assert seen == [(3, 1)]
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


# -- in a real replica ---------------------------------------------------------------------------


def histogram(base_url: str, name: str) -> dict[str, float]:
    """Bucket counts by ``le``, plus ``count`` and ``sum``, of an unlabelled histogram."""
    text = httpx.get(f"{base_url}/metrics").text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                values[sample.labels["le"]] = sample.value
            elif sample.name.endswith(("_count", "_sum")):
                values[sample.name.rsplit("_", 1)[1]] = sample.value
    return values


def test_concurrent_requests_are_batched_and_answered_each(
    small_batch_server: ServerProcess, sklearn_dir: Path, iris: Iris
) -> None:
    import joblib

    expected = joblib.load(sklearn_dir / "model.joblib").predict(iris.X)

    def rows_of(i: int) -> list[int]:
        start = (i * 7) % 148
        return list(range(start, start + 1 + i % 3))  # one to three rows, different for each caller

    async def round_of(client: httpx.AsyncClient, n: int) -> None:
        async def one(i: int) -> None:
            if i % 16 == 5:
                # Bad rows that pass the width check and only the framework refuses: they must fail
                # alone, without failing the requests batched with them.
                response = await client.post("/v1/models/iris:predict", json={"instances": [["x", 1, 2, 3]]})
                assert response.status_code == 400, response.text
                assert response.json() == {"error": "could not convert string to float: 'x'"}
                return
            body = {"instances": iris.X[rows_of(i)].tolist()}
            response = await client.post("/v1/models/iris:predict", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == expected[rows_of(i)].tolist()

        await asyncio.gather(*(one(i) for i in range(n)))

    async def load() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=small_batch_server.base_url, limits=limits, timeout=30
        ) as client:
            # Batches form from requests that arrive together; a few rounds make that all but certain
            # on any machine, and every round checks every answer.
            for _ in range(5):
                await round_of(client, 64)
                requests = histogram(small_batch_server.base_url, "inferbox_batch_requests")
                if requests["1.0"] < requests["count"]:
                    return
            pytest.fail(f"no framework call ever combined two requests: {requests}")

    asyncio.run(load())
    rows = histogram(small_batch_server.base_url, "inferbox_batch_size")
    assert rows["count"] >= 1
    assert rows["8.0"] == rows["count"]  # no call above --max-batch-size (requests here are <= 3 rows)
    requests = histogram(small_batch_server.base_url, "inferbox_batch_requests")
    assert requests["sum"] >= 64  # every request went through the batcher (the bad ones too)
