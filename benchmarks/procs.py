"""Processes the benchmark starts: launched in their own session, logged to a file, always stopped.

Every server is started through `Processes.start`, and `Processes.stop_all` (called from a `finally`)
stops each one by its own id: SIGTERM to its process group, then SIGKILL after a grace period, then the
same for any descendant recorded while it ran (inferbox's replicas live in sessions of their own, so a
group signal does not reach them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, depth first."""
    out: list[int] = []
    for child in children(pid):
        out.append(child)
        out += descendants(child)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return [
            a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a
        ]
    except OSError:
        return []


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB (MiB), from /proc/PID/status; None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts (RssAnon: the process's own heap; RssFile: mapped files such as shared
    libraries, counted in full in every process that maps them) and Pss (shared pages divided among their
    sharers), in MB. Context for VmRSS, which the targets use; empty when the process is gone."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = round(int(line.split()[1]) / 1024.0, 1)
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


@dataclass
class Proc:
    """A started server: its Popen, its log file, and the descendants seen while it ran."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def remember_descendants(self) -> None:
        self.seen.update(descendants(self.pid))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with code {code}; its log ends with:\n{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the group (its own session), wait, SIGKILL; then the same for leftover descendants."""
        self.remember_descendants()
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        leftovers = [p for p in self.seen if _alive(p)]
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while leftovers and time.monotonic() < deadline:
            leftovers = [p for p in leftovers if _alive(p)]
            time.sleep(0.1)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class Processes:
    """The servers started so far; `stop_all` stops them in reverse order."""

    def __init__(self) -> None:
        self.started: list[Proc] = []
        # Every process ever started, stopped or not, for the log tails of a failed run.
        self.history: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                # Its own session: Ctrl-C reaches only the benchmark, which then stops it in order.
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.started.append(proc)
        self.history.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        while self.started:
            proc = self.started.pop()
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                print(f"benchmarks: stopping {proc.name} failed: {exc}", flush=True)


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g}s")
        time.sleep(interval)


def wait_http(
    url: str, proc: Proc, *, timeout: float = 120.0, ok: Callable[[httpx.Response], bool] | None = None
) -> None:
    """Wait until GET `url` answers 200 (and `ok(response)`), failing early if `proc` exits."""

    def ready() -> bool:
        proc.check_running()
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and (ok is None or ok(response))

    wait_until(ready, timeout=timeout, interval=0.1, what=f"{proc.name} answering {url}")
