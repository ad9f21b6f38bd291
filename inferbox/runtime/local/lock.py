"""The data dir's owner lock: one local runtime per data dir.

Replica records, downloads and stable ports under a data dir belong to the runtime that holds this
lock; without it, a second runtime would reap the first one's live replicas as orphans. An `flock` is
released by the kernel when its holder dies, however it dies, so a crash never leaves it behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from inferbox.runtime.base import RuntimeLocked


class DataDirLock:
    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "owner.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RuntimeLocked(
                f"the data dir {self.path.parent.parent} is in use by pid {holder}: one local runtime "
                "per data dir (give each `inferbox serve` its own INFERBOX_DATA_DIR, or stop the other)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None
