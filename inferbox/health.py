"""The state of what inferbox depends on (the store, Redis), as the code that uses it last saw it.

Callers report each use (`ok()` / `failed(exc)`); `/health` reads the state and says which dependency is
down. An outage is logged when it begins, then at most once per interval while it lasts (with how many
calls failed meanwhile), and once when it ends: a Redis that is down for a minute under load is three
log lines, not thousands of tracebacks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from inferbox.timefmt import iso, now

log = logging.getLogger("inferbox.health")

LOG_INTERVAL_SECONDS = 30.0


def describe(exc: BaseException) -> str:
    """One line naming an error without its traceback (and without anything a URL may carry)."""
    cause = exc.__cause__ or exc
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text}"[:300] if text else type(cause).__name__


class Dependency:
    def __init__(self, name: str, *, log_interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.name = name
        self._log_interval = log_interval
        self._lock = threading.Lock()
        self.up = True
        self.error: str | None = None
        self._down_since: float | None = None
        self._down_since_wall: str | None = None
        self._failures = 0
        self._logged_at = 0.0

    def failed(self, exc: BaseException) -> None:
        reason = describe(exc)
        with self._lock:
            stamp = time.monotonic()
            self._failures += 1
            if self.up:
                self.up, self.error = False, reason
                self._down_since, self._down_since_wall = stamp, iso(now())
                self._logged_at = stamp
                log.warning("%s is unavailable: %s", self.name, reason)
                return
            self.error = reason
            if stamp - self._logged_at >= self._log_interval:
                self._logged_at = stamp
                log.warning(
                    "%s is still unavailable after %.0fs (%d failed calls): %s",
                    self.name,
                    stamp - (self._down_since or stamp),
                    self._failures,
                    reason,
                )

    def ok(self) -> None:
        if self.up:  # the hot path: one attribute read
            return
        with self._lock:
            if self.up:
                return
            lasted = time.monotonic() - (self._down_since or time.monotonic())
            log.warning(
                "%s is available again after %.1fs (%d failed calls)", self.name, lasted, self._failures
            )
            self.up, self.error, self._down_since, self._failures = True, None, None, 0

    def view(self) -> dict[str, Any]:
        with self._lock:
            if self.up:
                return {"status": "up"}
            return {"status": "down", "error": self.error, "since": self._down_since_wall}
