"""The machine's replica capacity: how many replica processes may run at once, shared by every model.

A cluster leaves pods Pending when no node can hold them; the local runtime does the same with its one
node. Each replica process holds one slot from its start until its process is gone for good (stopped,
or failed to load); a model whose autoscaler wants more replicas than there are free slots runs what
fits and reports the rest as pending (`Unschedulable`). When a slot frees, every model waiting for one
is told, so that the next reconcile of each takes what is free.

The default count is the machine's memory over 256 MiB (a sklearn replica's resident set is about half
that), at least 1; `INFERBOX_REPLICA_SLOTS` overrides it.
"""

from __future__ import annotations

from collections.abc import Callable

from inferbox.runtime.local.node import meminfo

SLOT_BYTES = 256 * 1024 * 1024
SETTING = "INFERBOX_REPLICA_SLOTS"


def default_slots() -> int:
    """The machine's memory over 256 MiB, at least 1 (1 when the memory cannot be read)."""
    return max(meminfo().get("MemTotal", 0) // SLOT_BYTES, 1)


class ReplicaSlots:
    """A counter of the replica slots in use. Used on the event loop only (no lock)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity if capacity else default_slots()
        self._holders: set[object] = set()
        # Called when a slot frees: each waiting model reconciles again (ModelGroup.kick).
        self._listeners: list[Callable[[], None]] = []

    @property
    def used(self) -> int:
        return len(self._holders)

    @property
    def free(self) -> int:
        return max(self.capacity - len(self._holders), 0)

    def take(self, holder: object) -> bool:
        """Give `holder` a slot if one is free (True), or if it already holds one."""
        if holder in self._holders:
            return True
        if len(self._holders) >= self.capacity:
            return False
        self._holders.add(holder)
        return True

    def give(self, holder: object) -> None:
        """`holder` no longer needs its slot (a no-op when it holds none)."""
        if holder in self._holders:
            self._holders.discard(holder)
            for listener in list(self._listeners):
                listener()

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def explain(self, pending: int) -> str:
        """The message of a model with `pending` replicas that found no slot."""
        return (
            f"{pending} replica(s) pending: all {self.capacity} replica slots of this machine are in use "
            f"({SETTING}); they start when other replicas stop"
        )
