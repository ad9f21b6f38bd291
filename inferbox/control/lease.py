"""One owner per runtime and store: the local runtime's processes belong to exactly one control plane.

The local runtime cannot be shared: its replicas are this machine's processes, its ports this machine's
ports. A second `inferbox serve` on the same store would otherwise start the same models again (and,
on the same data dir, reap the first one's live replicas as orphans). So the owner holds a lease in the
store, renewed every few seconds; a second control plane is refused at start while the lease is fresh,
and may take over once its holder stopped renewing (it crashed, or lost its machine).

The lease is claimed with one conditional statement (an INSERT, or an UPDATE that only matches a stale
or own lease), so two processes starting at once cannot both win.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from inferbox.blocking import in_thread
from inferbox.health import Dependency
from inferbox.runtime.base import RuntimeLocked
from inferbox.store import Store, affected
from inferbox.store.tables import RuntimeLease
from inferbox.timefmt import iso, now

log = logging.getLogger("inferbox.lease")

RENEW_SECONDS = 5.0
# A lease not renewed for this long is stale: its holder is taken to be gone.
STALE_SECONDS = 20.0


def owner_id() -> str:
    """Who this process is, as the lease (and an operator reading it) names it."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Lease:
    def __init__(self, store: Store, runtime: str, owner: str | None = None) -> None:
        self._store = store
        self.runtime = runtime
        self.owner = owner or owner_id()
        self.held = False

    def acquire(self) -> None:
        """Claim the lease, or raise RuntimeLocked when another live owner holds it."""
        stamp = now()
        try:
            with self._store.session() as session:
                session.add(
                    RuntimeLease(runtime=self.runtime, owner=self.owner, acquired_at=stamp, renewed_at=stamp)
                )
        except IntegrityError:
            with self._store.session() as session:
                holder = session.scalar(select(RuntimeLease).where(RuntimeLease.runtime == self.runtime))
                if holder is None or not self._takeable(holder, stamp):
                    raise RuntimeLocked(self._refusal(holder)) from None
                # Compare and swap: of two successors racing for a stale lease, one wins.
                taken = affected(
                    session.execute(
                        update(RuntimeLease)
                        .where(
                            RuntimeLease.runtime == self.runtime,
                            RuntimeLease.owner == holder.owner,
                            RuntimeLease.renewed_at == holder.renewed_at,
                        )
                        .values(owner=self.owner, acquired_at=stamp, renewed_at=stamp)
                    )
                )
                if not taken:
                    raise RuntimeLocked(self._refusal(holder)) from None
            if holder.owner != self.owner:
                log.warning("took over the %s runtime's lease from %s", self.runtime, holder.owner)
        self.held = True

    def _takeable(self, holder: RuntimeLease, stamp: datetime) -> bool:
        """Ours, stale, or held by a process of this machine that no longer runs (a crashed serve being
        restarted need not wait for its old lease to go stale)."""
        if holder.owner == self.owner or holder.renewed_at < stamp - timedelta(seconds=STALE_SECONDS):
            return True
        host, _, rest = holder.owner.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _refusal(self, holder: RuntimeLease | None) -> str:
        who = holder.owner if holder else "another process"
        since = f", renewed {iso(holder.renewed_at)}" if holder else ""
        return (
            f"the {self.runtime} runtime of this store is owned by {who}{since}: only one `inferbox serve` "
            "may run the local runtime per store and data dir (run more gateways with `inferbox gateway`, "
            f"or stop the other one; a crashed owner's lease goes stale after {STALE_SECONDS:g}s)"
        )

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (a successor took it over)."""
        with self._store.session() as session:
            renewed = affected(
                session.execute(
                    update(RuntimeLease)
                    .where(RuntimeLease.runtime == self.runtime, RuntimeLease.owner == self.owner)
                    .values(renewed_at=now())
                )
            )
        self.held = bool(renewed)
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        with self._store.session() as session:
            session.execute(
                delete(RuntimeLease).where(
                    RuntimeLease.runtime == self.runtime, RuntimeLease.owner == self.owner
                )
            )
        self.held = False

    async def keep(self, on_lost: Callable[[], Awaitable[None]], store_health: Dependency) -> None:
        """Renew every RENEW_SECONDS until cancelled. While the store is down the lease cannot be
        renewed (nor taken by anyone else); when a successor has taken it, `on_lost` runs once."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                renewed = await in_thread(self.renew)
            except Exception as exc:
                store_health.failed(exc)
                continue
            store_health.ok()
            if not renewed:
                log.critical(
                    "the %s runtime's lease was taken over by another control plane; stopping this "
                    "one's replicas (restart it once the other is gone)",
                    self.runtime,
                )
                await on_lost()
                return
