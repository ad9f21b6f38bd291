"""Adaptive batching: concurrent predictions for one model become one framework call.

How a batch forms (one worker thread runs the framework, one batch at a time):

* A request is queued. If no batch is running and no other prediction request is on its way (see
  below), the queue is dispatched at once: a lone request never waits.
* While a batch runs in the worker thread, new requests queue up; when it finishes, everything queued
  (up to ``max_batch_size`` rows) goes out as the next batch. Under load, batches grow by themselves
  to match the arrival rate ("natural" batching, no timer involved).
* The app announces each prediction request as soon as it arrives, before its body is read and
  decoded (:meth:`Batcher.expect`). If announced requests are still on their way, the open batch waits
  for them, but never longer than ``max_batch_wait`` after its first request was queued, and never
  once it holds ``max_batch_size`` rows.

A request is never split; one larger than ``max_batch_size`` rows runs alone. Results are split back by
row counts. When a combined call fails (or returns outputs that cannot be split by rows), each member
is retried alone in the same worker call, so one bad request cannot fail its batch-mates.

Within a batch, only requests whose arrays share dtype and trailing shape are concatenated (each such
group is one framework call), since concatenation would silently convert the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

logger = logging.getLogger(__name__)

Outputs = list[np.ndarray]
PredictFn = Callable[[np.ndarray], Outputs]
# Per member: its outputs or the exception for it; then (rows, requests) of each framework call.
_RunResult = tuple[list[Outputs | BaseException], list[tuple[int, int]]]
T = TypeVar("T")

# A lone request whose framework call usually takes less than this runs on the event loop itself: the
# hop to the worker thread and back costs more than the call (an SVC row is ~0.2 ms), and with nobody
# else waiting there is nothing to keep the loop free for.
INLINE_CALL_SECONDS = 0.001


@dataclass(slots=True)
class _Item:
    x: np.ndarray
    rows: int
    future: asyncio.Future[Outputs]


class Batcher:
    """Combines concurrent :meth:`predict` calls into calls of ``predict_fn`` on a worker thread.

    ``on_batch(rows, requests)`` is called on the event loop for every framework call made (metrics).
    Must be created and used on one running event loop.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        max_batch_size: int = 32,
        max_batch_wait: float = 0.002,
        batchable: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
        alone: Callable[[], bool] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._predict_fn = predict_fn
        self._max_rows = max_batch_size if batchable else 1
        self._max_wait = max(0.0, max_batch_wait)
        self._on_batch = on_batch
        # Whether the request being dispatched is the only one the server holds (no such knowledge:
        # never run inline).
        self._alone = alone or (lambda: False)
        self._loop = asyncio.get_running_loop()
        # One thread: batches run one at a time, which is what makes them grow under load.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inferbox-predict")
        self._pending: deque[_Item] = deque()
        self._pending_rows = 0
        self._opened_at = 0.0  # when the oldest queued request was queued
        self._expected = 0  # announced requests that have not been queued (or given up) yet
        self._running = False
        self._deciding = False  # a lone request waits one turn of the loop for company
        # Moving average of one framework call, for the inline decision; unknown until a call ran on
        # the worker thread, so a model of unknown speed never blocks the loop.
        self._call_seconds: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- request side ---------------------------------------------------------------------------

    def expect(self) -> None:
        """Announce a prediction request that will call :meth:`predict` (or :meth:`forget`) soon."""
        self._expected += 1

    def forget(self) -> None:
        """Withdraw an announcement: the request failed before it could call :meth:`predict`."""
        self._expected -= 1
        self._maybe_dispatch()

    async def predict(self, x: np.ndarray, *, expected: bool = False) -> Outputs:
        """Predict on ``x`` (rows along the first axis) as part of a batch; ``expected`` says the call
        was announced with :meth:`expect`. Raises whatever the framework raised for these rows."""
        if expected:
            self._expected -= 1
        future: asyncio.Future[Outputs] = self._loop.create_future()
        if not self._pending:
            self._opened_at = time.monotonic()
        rows = len(x) if x.ndim else 1
        self._pending.append(_Item(x, rows, future))
        self._pending_rows += rows
        self._idle.clear()
        self._maybe_dispatch()
        return await future

    async def run_alone(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread outside any batch (multi-input models)."""
        return await self._loop.run_in_executor(self._executor, fn)

    async def close(self) -> None:
        """Stop waiting for stragglers, let queued and running batches finish, stop the worker."""
        self._closing = True
        self._maybe_dispatch()
        await self._idle.wait()
        # The worker is idle now; anything still queued by run_alone finishes before the process exits.
        self._executor.shutdown(wait=False)

    # -- dispatch ------------------------------------------------------------------------------

    def _maybe_dispatch(self) -> None:
        if self._running or self._deciding or not self._pending:
            return
        if self._pending_rows < self._max_rows and self._expected > 0 and not self._closing:
            remaining = self._opened_at + self._max_wait - time.monotonic()
            if remaining > 0:
                if self._timer is None:
                    self._timer = self._loop.call_later(remaining, self._on_timer)
                return
        if self._lone_and_quick():
            # Looks alone, but requests that arrived with it may not have started yet: they run before
            # the next turn of the loop. Decide then, so a burst is batched, not run one by one inline.
            self._deciding = True
            self._loop.call_soon(self._decide)
            return
        self._dispatch()

    def _lone_and_quick(self) -> bool:
        quick = self._call_seconds is not None and self._call_seconds < INLINE_CALL_SECONDS
        return (
            quick and len(self._pending) == 1 and self._expected == 0 and not self._closing and self._alone()
        )

    def _decide(self) -> None:
        self._deciding = False
        if self._running or not self._pending:
            return
        if self._lone_and_quick():
            self._dispatch(inline=True)
        else:
            self._maybe_dispatch()

    def _on_timer(self) -> None:
        self._timer = None
        if not self._running and self._pending:
            self._dispatch()

    def _dispatch(self, *, inline: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items: list[_Item] = []
        rows = 0
        pending = self._pending
        while pending and (not items or rows + pending[0].rows <= self._max_rows):
            item = pending.popleft()
            if item.future.done():  # its caller went away
                self._pending_rows -= item.rows
                continue
            items.append(item)
            rows += item.rows
        self._pending_rows -= rows
        if pending:
            self._opened_at = time.monotonic()
        if not items:
            self._after_batch()
            return
        self._running = True
        xs = [item.x for item in items]
        if inline:
            ran: asyncio.Future[_RunResult] = self._loop.create_future()
            ran.set_result(self._run(xs))
            self._finish(items, ran)
            return
        done = self._loop.run_in_executor(self._executor, self._run, xs)
        done.add_done_callback(lambda f: self._finish(items, f))

    def _finish(self, items: list[_Item], done: asyncio.Future[_RunResult]) -> None:
        self._running = False
        calls: list[tuple[int, int]] = []
        try:
            results, calls = done.result()
        except BaseException as exc:  # the executor itself failed; every member gets the error
            results = [exc] * len(items)
        for item, result in zip(items, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        if self._on_batch is not None:
            try:
                for rows, requests in calls:
                    self._on_batch(rows, requests)
            except Exception:
                logger.exception("batch callback failed")
        self._after_batch()

    def _after_batch(self) -> None:
        self._maybe_dispatch()
        if not self._running and not self._pending:
            self._idle.set()

    # -- worker thread -------------------------------------------------------------------------

    def _run(self, xs: list[np.ndarray]) -> tuple[list[Outputs | BaseException], list[tuple[int, int]]]:
        """Runs on the worker thread (or inline, for a lone quick request). Returns each member's
        outputs (or exception) and, for metrics, the (rows, requests) of every framework call made."""
        started = time.perf_counter()
        results: list[Outputs | BaseException | None] = [None] * len(xs)
        calls: list[tuple[int, int]] = []
        # Only arrays of one dtype and trailing shape are concatenated; concatenating others would
        # silently convert them (ints to floats, numbers to strings). Each group is one call.
        groups: dict[tuple[np.dtype, tuple[int, ...]], list[int]] = {}
        for index, x in enumerate(xs):
            groups.setdefault((x.dtype, x.shape[1:]), []).append(index)
        for indices in groups.values():
            members = [xs[i] for i in indices]
            for i, result in zip(indices, self._run_group(members, calls), strict=True):
                results[i] = result
        per_call = (time.perf_counter() - started) / max(1, len(calls))
        previous = self._call_seconds
        self._call_seconds = per_call if previous is None else 0.8 * previous + 0.2 * per_call
        return results, calls  # type: ignore[return-value]

    def _run_group(self, xs: list[np.ndarray], calls: list[tuple[int, int]]) -> list[Outputs | BaseException]:
        counts = [len(x) for x in xs]
        if len(xs) > 1:
            total = sum(counts)
            calls.append((total, len(xs)))
            try:
                outputs = self._predict_fn(np.concatenate(xs))
                if all(np.ndim(out) > 0 and len(out) == total for out in outputs):
                    return _split(outputs, counts)
                logger.debug("batched outputs do not have one row per input row; running members alone")
            except Exception as exc:
                logger.debug("batch of %d failed (%s); running members alone", len(xs), exc)
        results: list[Outputs | BaseException] = []
        for x, count in zip(xs, counts, strict=True):
            calls.append((count, 1))
            try:
                results.append(self._predict_fn(x))
            except Exception as exc:
                results.append(exc)
        return results


def _split(outputs: Outputs, counts: list[int]) -> list[Outputs | BaseException]:
    results: list[Outputs | BaseException] = []
    start = 0
    for count in counts:
        end = start + count
        results.append([out[start:end] for out in outputs])
        start = end
    return results
