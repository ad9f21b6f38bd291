"""The scale-from-zero watcher: a caller of a model's stable URL wakes a model scaled to zero.

A direct caller (not through `connect()`) of a model that has no replica connects to the model's stable
socket, which the runtime keeps listening; the connection waits in the kernel's accept queue, since only
replicas accept on that socket. While the model wants no replica, the runtime watches the socket for
readability (a waiting connection) and then activates the model: a replica starts, inherits the socket
and accepts the queued connection, which is answered once the model is loaded.

Kept apart from the supervisor because it is the one place that registers a reader with the event loop,
and because watching must stop at exactly the right moments (a level-triggered reader on a socket nobody
accepts on would fire on every loop iteration).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol


class WatchedModel(Protocol):
    """What the watcher reads of its model to know whether to watch, and how it wakes it."""

    desired: int
    sock: socket.socket | None
    closing: bool
    failure: str | None

    def activate(self) -> None:
        """A request came: scale up from zero."""


class ScaleFromZeroWatcher:
    """Watches a model's stable socket while the model wants no replica."""

    def __init__(self, model: WatchedModel, loop: asyncio.AbstractEventLoop) -> None:
        self._model = model
        self._loop = loop
        self._fd: int | None = None

    @property
    def watching(self) -> bool:
        return self._fd is not None

    def update(self) -> None:
        """Watch the stable socket while the model has no replica wanted (and can serve): a waiting
        connection there is a caller to wake the model for. Stop watching otherwise."""
        model = self._model
        want = model.desired == 0 and model.sock is not None and not model.closing and model.failure is None
        if want and self._fd is None:
            assert model.sock is not None
            fd = model.sock.fileno()
            self._loop.add_reader(fd, self._on_connection_waiting)
            self._fd = fd
        elif not want:
            self.stop()

    def stop(self) -> None:
        """Stop watching (before the socket is closed, or once the model wants a replica)."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._fd = None

    def _on_connection_waiting(self) -> None:
        # Stop watching first: the connection stays queued until a replica accepts it, and a
        # level-triggered reader would fire on every loop iteration meanwhile.
        self.stop()
        self._model.activate()
