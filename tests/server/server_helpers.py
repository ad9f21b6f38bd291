"""Helpers for the model-server tests: start a real replica as a subprocess and talk to it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from support import free_port

READY_TIMEOUT = 90.0  # a replica loads in about a second; a busy 2-core CI machine may take many more
STOP_TIMEOUT = 15.0
LOAD_FAILED_PREFIX = "inferbox-model-server: failed to load model: "


class ServerProcess:
    """A replica running as ``python -m inferbox.server``; stderr goes to a temporary file."""

    def __init__(self, args: Sequence[str], *, base_url: str, pass_fds: Sequence[int] = ()) -> None:
        self.base_url = base_url
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inferbox.server", *args],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            pass_fds=tuple(pass_fds),
        )

    @property
    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll readiness until 200; fail early, with the server's stderr, if the process exits."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited with {self.process.returncode}:\n{self.stderr}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v2/health/ready").status_code == 200:
                        return
                time.sleep(0.02)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.stderr}")

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server did not stop on SIGTERM:\n{self.stderr}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


@contextlib.contextmanager
def running_server(
    framework: str, model_dir: Path, *extra: str, name: str = "iris", ready_timeout: float = READY_TIMEOUT
) -> Iterator[ServerProcess]:
    """A ready replica on a free port; on exit it must stop cleanly on SIGTERM (exit code 0)."""
    port = free_port()
    server = ServerProcess(
        [
            "--name",
            name,
            "--framework",
            framework,
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
            *extra,
        ],
        base_url=f"http://127.0.0.1:{port}",
    )
    try:
        server.wait_ready(ready_timeout)
        yield server
        code = server.stop()
        assert code == 0, f"exit code {code} on SIGTERM:\n{server.stderr}"
        assert "Traceback" not in server.stderr, server.stderr
    finally:
        server.close()


def run_server_to_exit(
    *args: str, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the server with ``args`` and wait for it to exit by itself (load failures, usage errors);
    ``env`` replaces the environment (e.g. one that hides a framework's packages)."""
    return subprocess.run(
        [sys.executable, "-m", "inferbox.server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def load_failure_line(stderr: str) -> str:
    """The one ``failed to load model`` line of a replica's stderr (asserting there is exactly one)."""
    lines = [line for line in stderr.splitlines() if line.startswith(LOAD_FAILED_PREFIX)]
    assert len(lines) == 1, stderr
    return lines[0][len(LOAD_FAILED_PREFIX) :]


def assert_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    """The response is ``status`` with a JSON ``{"error": ...}`` body mentioning every fragment."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return body
