"""Records of running replicas, so that a restarted inferbox can reap the ones a crash left behind.

A replica runs in its own session (so that a Ctrl-C meant for inferbox does not kill it before it is
drained); the flip side is that it outlives a crashed parent. Each replica therefore leaves a small
JSON record under `{data_dir}/run/` while it runs. At start the runtime kills every recorded process
that is still alive and still the same process (same /proc start time: a recycled pid is left alone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from inferbox.runtime.local.node import process_alive, process_start_ticks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaRecord:
    pid: int
    start_ticks: int | None
    namespace: str
    model: str
    replica: str


class OrphanRegistry:
    """The `{data_dir}/run/` directory: one `<pid>.json` per live replica process."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def _path(self, pid: int) -> Path:
        return self.run_dir / f"{pid}.json"

    def record(self, pid: int, namespace: str, model: str, replica: str) -> None:
        """Write the record of a just-started process (atomically: a crash never leaves half a file)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rec = ReplicaRecord(pid, process_start_ticks(pid), namespace, model, replica)
        tmp = self.run_dir / f".{pid}.json.tmp"
        tmp.write_text(json.dumps(asdict(rec)))
        os.replace(tmp, self._path(pid))

    def forget(self, pid: int) -> None:
        """Remove the record of a process that has exited (or was killed) under our watch."""
        with contextlib.suppress(FileNotFoundError):
            self._path(pid).unlink()

    def records(self) -> list[ReplicaRecord]:
        out: list[ReplicaRecord] = []
        if not self.run_dir.is_dir():
            return out
        for path in sorted(self.run_dir.glob("*.json")):
            try:
                out.append(ReplicaRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                log.warning("ignoring unreadable replica record %s", path)
                with contextlib.suppress(OSError):
                    path.unlink()
        return out

    def reap(self, wait_seconds: float = 5.0) -> list[ReplicaRecord]:
        """Kill (SIGKILL) every recorded replica that is still ours and alive, wait until they are gone
        (their sockets closed, so the stable ports can be bound again), and clear the records.
        Returns the records of the processes it killed."""
        killed: list[ReplicaRecord] = []
        for rec in self.records():
            if self._is_ours(rec):
                log.warning("killing orphaned replica %s/%s pid %d", rec.namespace, rec.replica, rec.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(rec.pid, signal.SIGKILL)
                killed.append(rec)
            else:
                self.forget(rec.pid)
        deadline = time.monotonic() + wait_seconds
        for rec in killed:
            while process_alive(rec.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.forget(rec.pid)
        return killed

    @staticmethod
    def _is_ours(rec: ReplicaRecord) -> bool:
        if not process_alive(rec.pid):
            return False
        # Without a recorded start time we cannot tell a recycled pid from ours: leave it alone.
        return rec.start_ticks is not None and process_start_ticks(rec.pid) == rec.start_ticks
