"""One replica: a model-server process, restarted in place when it crashes (a pod, in Kubernetes' words).

The replica is the unit the supervisor creates and removes; the process inside it may be restarted
(with back-off) while the replica lives on and counts `restarts`. Each process gets two inherited
listening sockets: the model's stable socket (shared by every replica) and its own, bound here on a
free port, which the runtime uses for readiness, stats and `connect()` routing. What the process uses and
serves (CPU, memory, concurrency, requests per second) is read by the replica's `usage.UsageMeter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from datetime import UTC, datetime
from typing import Protocol

import httpx

from inferbox.runtime.local import sockets
from inferbox.runtime.local.orphans import OrphanRegistry
from inferbox.runtime.local.usage import UsageMeter

log = logging.getLogger(__name__)

# Replica phases, as `kubectl get pods` shows them.
PENDING = "Pending"
CONTAINER_CREATING = "ContainerCreating"
RUNNING = "Running"
CRASH_LOOP = "CrashLoopBackOff"
TERMINATING = "Terminating"
ERROR = "Error"

# The model server's contract: exit code and stderr line of a model that cannot be loaded.
EXIT_FAILED_TO_LOAD = 3
LOAD_FAILURE_PREFIX = "inferbox-model-server: failed to load model:"
READY_LINE = "inferbox-model-server: ready"

# How long a replica a call could not reach stays out of selection (unless it restarts first).
SUSPECT_SECONDS = 1.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
# A process that ran this long, or that was Ready and served, counts as healthy: its crash restarts
# the back-off from the start (a model that crashes after an hour of serving is not crash-looping).
BACKOFF_RESET_AFTER = 60.0
READY_PATH = "/v2/health/ready"


# What a replica inherits of inferbox's environment. A replica runs user-supplied models (a pickle is
# code), so the control plane's secrets (JWT_SECRET, ADMIN_PASSWORD, DATABASE_URL, cloud credentials…)
# must not reach it: only locale, paths and the knobs of the ML libraries pass.
_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
    }
)
_ENV_PREFIXES = (
    "LC_",
    "PYTHON",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "NUMEXPR_",
    "CUDA_",
    "NVIDIA_",
    "HF_",
    "TRANSFORMERS_",
    "TORCH",
    "XDG_",
)


def replica_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a replica process: the allowed part of ours, unbuffered output."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)}
    # Unbuffered: output reaches the log ring as it is written, and a crash loses none of it.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ReplicaOwner(Protocol):
    """What a replica reports to its model's supervisor."""

    def replica_changed(self, replica: Replica) -> None:
        """Phase, readiness or restart count changed."""

    def replica_output(self, replica: Replica, line: str) -> None:
        """One line of the process's stdout or stderr."""

    def replica_failed_to_load(self, replica: Replica, message: str) -> None:
        """The process exited with EXIT_FAILED_TO_LOAD; the replica will not restart."""

    def replica_finished(self, replica: Replica) -> None:
        """The replica's lifecycle ended (stopped, or failed to load)."""


def backoff_delay(consecutive_crashes: int) -> float:
    """1 s, 2 s, 4 s … capped at 60 s, for the 1st, 2nd, 3rd … crash in a row."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(consecutive_crashes - 1, 0))


class Replica:
    """A model-server process and its restarts. Create it, `start()` it, and `stop()` it to drain."""

    def __init__(
        self,
        owner: ReplicaOwner,
        *,
        name: str,
        generation: int,
        argv: list[str],
        stable_fd: int,
        host: str,
        http: httpx.AsyncClient,
        registry: OrphanRegistry,
        namespace: str,
        model: str,
        env: dict[str, str] | None = None,
        stop_grace: float = 20.0,
    ) -> None:
        self.owner = owner
        self.name = name
        self.generation = generation
        self.namespace = namespace
        self.model = model
        self._argv = argv
        self._stable_fd = stable_fd
        self._host = host
        self._http = http
        self._registry = registry
        self._env = env
        self._stop_grace = stop_grace

        self.created_at = datetime.now(UTC)
        self.phase = PENDING
        self.ready = False
        # Out of connect() selection: set when the replica starts to drain, never unset.
        self.stopping = False
        self.restarts = 0
        self.outstanding = 0
        self.picks = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.port: int | None = None
        self.started_at: datetime | None = None
        self.last_exit: int | None = None
        self.restart_in: float | None = None
        self.load_error: str | None = None
        # The current process was Ready and answered at least one request.
        self.served = False
        # When a call found this replica unreachable: out of selection for a moment (its process is
        # most likely gone, which the supervisor sees within milliseconds, or it is about to be).
        self.unreachable_at: float | None = None

        # CPU, memory, concurrency and rps: sampled by the autoscaler's tick (`poll_stats`, `usage.sample`).
        self.usage = UsageMeter(http)

        self._terminate = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    # -- what others read ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{sockets.url_host(self._host)}:{self.port}"

    @property
    def address(self) -> str | None:
        return None if self.port is None else f"{sockets.url_host(self._host)}:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def has_process(self) -> bool:
        return self.pid is not None

    # -- connect() bookkeeping ---------------------------------------------------------------------------

    def suspect(self) -> None:
        """A call could not reach this replica: route around it until its supervisor has looked."""
        self.unreachable_at = time.monotonic()

    def suspected(self, now: float) -> bool:
        return self.unreachable_at is not None and now - self.unreachable_at < SUSPECT_SECONDS

    def hold(self) -> None:
        self.outstanding += 1
        self.picks += 1
        self._idle.clear()

    def release(self) -> None:
        self.served = self.served or self.ready
        self.outstanding = max(self.outstanding - 1, 0)
        if self.outstanding == 0:
            self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"replica {self.name}")

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Drain and stop: leave connect() selection, wait (bounded) for the requests it holds, then
        SIGTERM (the server finishes its own in-flight requests), and SIGKILL after the grace period."""
        if not self.stopping:
            self.stopping = True
            self.ready = False
            self.phase = TERMINATING
            self.owner.replica_changed(self)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_timeout)
        self._terminate.set()
        if self._task is not None:
            # Shielded: a cancelled caller must not leave the process half-stopped.
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        crashes = 0
        try:
            while not self.stopping:
                self.phase = CONTAINER_CREATING
                self.restart_in = None
                self.owner.replica_changed(self)
                began = time.monotonic()
                code = await self._run_once()
                self.last_exit = code
                self.ready = False
                if self.stopping:
                    break
                if code == EXIT_FAILED_TO_LOAD:
                    self.phase = ERROR
                    message = self.load_error or f"model server exited with code {code}"
                    self.owner.replica_failed_to_load(self, message)
                    return
                healthy = self.served or time.monotonic() - began >= BACKOFF_RESET_AFTER
                crashes = 1 if healthy else crashes + 1
                self.restarts += 1
                delay = backoff_delay(crashes)
                log.warning("replica %s exited with code %s; restarting in %gs", self.name, code, delay)
                self.phase = CRASH_LOOP
                self.restart_in = delay
                self.owner.replica_output(
                    self, f"[inferbox] process exited with code {code}; restarting in {delay:g}s"
                )
                self.owner.replica_changed(self)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._terminate.wait(), delay)
        finally:
            self.ready = False
        self.phase = TERMINATING
        self.owner.replica_finished(self)

    async def _spawn(self) -> asyncio.subprocess.Process:
        own = sockets.listen(self._host, 0)
        try:
            self.port = sockets.port_of(own)
            argv = [*self._argv, "--fd", str(self._stable_fd), "--fd", str(own.fileno())]
            env = replica_env() if self._env is None else self._env
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(self._stable_fd, own.fileno()),
                # Its own session: a Ctrl-C for inferbox reaches the replicas only through a drain.
                start_new_session=True,
                env=env,
                limit=1 << 20,
            )
        finally:
            # The process has its copy; without ours, the port closes when the process dies, so a
            # caller of a dead replica is refused at once instead of waiting in a backlog.
            own.close()

    async def _run_once(self) -> int:
        """Start one process and supervise it until it exits; returns its exit code (negative: signal)."""
        self.load_error = None
        self.served = False
        self.unreachable_at = None
        try:
            proc = await self._spawn()
        except OSError as exc:
            self.owner.replica_output(self, f"[inferbox] cannot start the model server: {exc}")
            return -1
        self.proc = proc
        self.started_at = datetime.now(UTC)
        self.usage.reset()
        try:
            self._registry.record(proc.pid, self.namespace, self.model, self.name)
        except OSError as exc:  # a read-only data dir must not stop serving
            log.warning("cannot record replica %s: %s", self.name, exc)
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [asyncio.create_task(self._pump(proc.stdout)), asyncio.create_task(self._pump(proc.stderr))]
        ready_task = asyncio.create_task(self._wait_ready())
        exit_task = asyncio.create_task(proc.wait())
        term_task = asyncio.create_task(self._terminate.wait())
        try:
            await asyncio.wait({exit_task, term_task}, return_when=asyncio.FIRST_COMPLETED)
            if self.ready:
                # Out of connect() selection at once, not after the output is read to its end.
                self.ready = False
                self.owner.replica_changed(self)
            if not exit_task.done():
                await self._terminate_process(proc, exit_task)
        finally:
            for task in (ready_task, term_task):
                task.cancel()
            if not exit_task.done():
                # Cancelled from outside (the loop is going away without close()): leave the process
                # running; the next start() reaps it as an orphan.
                exit_task.cancel()
        # Read what the process said last (the loader's message) before judging its exit; bounded,
        # because a grandchild could still hold the pipes open.
        await asyncio.wait(pumps, timeout=2.0)
        for task in pumps:
            task.cancel()
        self._registry.forget(proc.pid)
        self.ready = False
        code = proc.returncode
        return code if code is not None else -1

    async def _terminate_process(
        self, proc: asyncio.subprocess.Process, exit_task: asyncio.Task[int]
    ) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exit_task), self._stop_grace)
        except TimeoutError:
            self.owner.replica_output(
                self, f"[inferbox] no exit {self._stop_grace:g}s after SIGTERM; SIGKILL"
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await exit_task

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: it was dropped
                self.owner.replica_output(self, "[inferbox] (an overlong output line was dropped)")
                continue
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.startswith(LOAD_FAILURE_PREFIX):
                self.load_error = line[len(LOAD_FAILURE_PREFIX) :].strip()
            elif line == READY_LINE:
                self._mark_ready()
            self.owner.replica_output(self, line)

    async def _wait_ready(self) -> None:
        """Poll the replica's own port until the model server says it is ready. The server's ready line
        on stderr usually says so first (`_pump`); polling is the fallback, so it stays slow."""
        url = self.base_url + READY_PATH
        delay = 0.05
        while not self.ready:
            try:
                response = await self._http.get(url, timeout=2.0)
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        self._mark_ready()

    def _mark_ready(self) -> None:
        if self.ready or self.stopping or self.proc is None or self.proc.returncode is not None:
            return
        self.ready = True
        self.phase = RUNNING
        self.owner.replica_changed(self)

    # -- usage ---------------------------------------------------------------------------------------

    async def poll_stats(self, now: float, timeout: float) -> bool:
        """Read the model server's stats into `usage` (concurrency, rps). Returns True when the replica
        saw requests (or holds some) since the previous poll."""
        reading = await self.usage.poll(self.base_url, now, timeout)
        if reading is None:
            return False
        if reading.requests > 0 and self.ready:
            self.served = True
        return reading.active
