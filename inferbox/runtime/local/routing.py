"""Replica routing for `connect()`: which replica of a model takes the next request.

A caller of `connect()` holds one replica for one request. The router picks the ready replica with the
fewest outstanding requests (ties: the one picked least often, so that idle replicas take turns), and
when none is ready it asks the model to activate (scale up from zero) and waits until something
observable changes: the model's supervisor calls `notify()` on every change, which wakes every waiter
to look again. It gives up with ModelNotRunning when the model is being deleted, failed to load, or no
replica became ready in time.

Kept apart from the supervisor because it is the one part of a model that request handlers drive; the
supervisor drives the rest from its reconcile loop and the autoscaler's tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from inferbox.runtime.base import ModelNotRunning, ModelSpec
from inferbox.runtime.local.replica import SUSPECT_SECONDS, Replica


class RoutedModel(Protocol):
    """What the router reads of its model, and where it notes the time of each request."""

    spec: ModelSpec
    replicas: list[Replica]
    closing: bool
    failure: str | None
    last_request_at: float

    def activate(self) -> None:
        """A request came: scale up from zero if the model is there."""


class ReplicaRouter:
    """Acquire and release a model's replicas, one request at a time."""

    def __init__(self, model: RoutedModel, loop: asyncio.AbstractEventLoop) -> None:
        self._model = model
        self._loop = loop
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone waiting in `acquire` to look again."""
        self._wake.set()
        self._wake = asyncio.Event()

    def pick(self) -> Replica | None:
        """The ready replica with the fewest outstanding requests (None: no replica is ready), leaving
        out one a call has just found unreachable."""
        now = time.monotonic()
        candidates = [r for r in self._model.replicas if r.ready and not r.stopping and not r.suspected(now)]
        if not candidates:
            return None
        return min(candidates, key=lambda r: (r.outstanding, r.picks))

    async def acquire(self, timeout: float) -> Replica:
        """The ready replica with the fewest outstanding requests, held for one request; scales up
        from zero and waits (up to `timeout`) when none is ready."""
        model = self._model
        deadline = self._loop.time() + timeout
        name = f"{model.spec.namespace}/{model.spec.name}"
        while True:
            if model.closing:
                raise ModelNotRunning(f"model {name} is being deleted", retry_after=5)
            replica = self.pick()
            if replica is not None:
                replica.hold()
                model.last_request_at = time.monotonic()
                return replica
            if model.failure is not None:
                raise ModelNotRunning(f"model {name} failed to load: {model.failure}", retry_after=30)
            model.activate()
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise ModelNotRunning(
                    f"no replica of model {name} became ready within {timeout:g}s", retry_after=5
                )
            wake = self._wake
            # A suspected replica comes back into selection by itself: look again when it does.
            comeback = [r.unreachable_at for r in model.replicas if r.ready and r.unreachable_at is not None]
            if comeback:
                remaining = min(remaining, max(min(comeback) + SUSPECT_SECONDS - time.monotonic(), 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    def release(self, replica: Replica) -> None:
        """The request held on `replica` is done."""
        replica.release()
        self._model.last_request_at = time.monotonic()
