"""The in-process event bus: status changes of models and publications, streamed to `/ws`.

Publishers never wait for subscribers: each subscriber has a bounded queue, and one that falls behind is
dropped (its queue is closed) instead of slowing the publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from inferbox.runtime.base import MODEL_SCALED, MODEL_STATUS_CHANGED
from inferbox.timefmt import iso_now

# Event types. Model events come from the API and the runtime, publication events from publishing.
MODEL_CREATED = "model.created"
MODEL_DELETED = "model.deleted"
PUBLICATION_PUBLISHED = "publication.published"
PUBLICATION_UPDATED = "publication.updated"
PUBLICATION_UNPUBLISHED = "publication.unpublished"
PUBLICATION_KEY_ROTATED = "publication.keyRotated"

EVENT_TYPES = (
    MODEL_CREATED,
    MODEL_STATUS_CHANGED,
    MODEL_SCALED,
    MODEL_DELETED,
    PUBLICATION_PUBLISHED,
    PUBLICATION_UPDATED,
    PUBLICATION_UNPUBLISHED,
    PUBLICATION_KEY_ROTATED,
)


@dataclass(frozen=True)
class Event:
    """One thing that happened to a named object in a namespace (tenant)."""

    type: str
    namespace: str
    name: str
    data: dict[str, Any]
    timestamp: str = field(default_factory=iso_now)
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "namespace": self.namespace,
            "name": self.name,
            "data": self.data,
            "timestamp": self.timestamp,
        }


class Subscription:
    """A subscriber's bounded queue: `get()` until None, which means closed or dropped for being slow."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.dropped = False

    def _offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self._bus.unsubscribe(self)
            # Make room for the end marker so the reader wakes up and stops.
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def get(self) -> Event | None:
        """The next event, or None once the subscription is closed or dropped."""
        return await self._queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


class EventBus:
    """Fan-out of events to subscribers in the process. `publish` may be called from the event loop or
    from a worker thread (blocking request handlers run in a thread pool): it hands over to the loop."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self._seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop that owns the subscribers' queues."""
        self._loop = loop

    def subscribe(self, maxsize: int = 256) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(sub)

    def publish(self, type: str, namespace: str, name: str, data: dict[str, Any] | None = None) -> Event:
        event = Event(type=type, namespace=namespace, name=name, data=data or {}, seq=next(self._seq))
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._deliver, event)
        else:
            self._deliver(event)
        return event

    def _deliver(self, event: Event) -> None:
        for sub in list(self._subscribers):
            sub._offer(event)
