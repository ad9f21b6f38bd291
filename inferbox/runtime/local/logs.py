"""The log rings of one model: the last output lines of each of its replicas, for `logs()`.

Each replica's stdout and stderr lines go into a ring of its own (bounded, oldest dropped first), and
every line gets a sequence number in the order it arrived, so that the lines of all replicas can be read
back interleaved as they were printed. A replica that is gone (scaled down, rolled, failed) keeps its
ring for a while: the output of the replica that just crashed or scaled to zero is what one wants to
read. Only the last few departed replicas are kept, so a model that is rolled often does not grow.

Kept apart from the supervisor because it is plain bookkeeping with no I/O and no clock: it is read by
the API and written by every replica, and nothing in it depends on the model's state.
"""

from __future__ import annotations

import itertools
from collections import deque


class LogRings:
    """The output lines of a model's current and recently departed replicas."""

    def __init__(self, lines_kept: int, departed_kept: int) -> None:
        self._lines_kept = lines_kept
        self._departed_kept = departed_kept
        # Lines per replica, numbered in arrival order so that `read` can interleave them.
        self._rings: dict[str, deque[tuple[int, str]]] = {}
        self._seq = itertools.count()
        self._departed: deque[str] = deque()

    def append(self, replica: str, line: str) -> None:
        """One output line of `replica`."""
        ring = self._rings.get(replica)
        if ring is None:
            ring = self._rings[replica] = deque(maxlen=self._lines_kept)
        ring.append((next(self._seq), line))

    def depart(self, replica: str) -> None:
        """`replica` is gone: its lines stay readable until a few more replicas have left."""
        self._departed.append(replica)
        while len(self._departed) > self._departed_kept:
            self._rings.pop(self._departed.popleft(), None)

    def read(self, lines: int, replica: str | None = None) -> list[str]:
        """The last `lines` output lines, oldest first: of one replica as they were printed, or of
        all (current and recently departed) replicas interleaved, each prefixed with `[replica]`."""
        if lines <= 0:
            return []
        if replica is not None:
            return [line for _, line in list(self._rings.get(replica, ()))[-lines:]]
        merged = sorted((seq, name, line) for name, ring in self._rings.items() for seq, line in ring)
        return [f"[{name}] {line}" for _, name, line in merged[-lines:]]
