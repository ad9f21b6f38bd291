"""The real `kubectl`, for `/api/admin/kubectl` on the Kubernetes runtime.

The command has passed the guard (runtime/kubectl/guard.py: read verbs only, no secrets, no flag that
leaves the admin's view) before this runs. It runs as an argument list (never through a shell), with
the runtime's kubeconfig (or, without one, kubectl's own in-cluster service-account config), a timeout
and a cap on what it may print; a missing binary is the caller's 503, not a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass

from inferbox.runtime.base import RuntimeUnavailable

TIMEOUT_SECONDS = 20.0
OUTPUT_CAP_BYTES = 1024 * 1024


@dataclass(frozen=True)
class KubectlResult:
    text: str
    exit_code: int
    truncated: bool


def kubectl_argv(binary: str, argv: tuple[str, ...]) -> list[str]:
    """The process's argv: the binary, then the guarded words (the kubeconfig comes by environment)."""
    return [binary, *argv]


async def run_kubectl(
    argv: tuple[str, ...],
    *,
    kubeconfig: str | None,
    binary: str = "kubectl",
    timeout: float = TIMEOUT_SECONDS,
    cap: int = OUTPUT_CAP_BYTES,
) -> KubectlResult:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeUnavailable(f"the kubectl binary ({binary}) is not on this machine's PATH")
    # Only what kubectl needs from our environment: never our secrets (JWT_SECRET, DATABASE_URL, ...).
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("KUBERNETES_SERVICE_")})
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    proc = await asyncio.create_subprocess_exec(
        *kubectl_argv(path, argv),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []
    size = 0
    truncated = False

    async def read() -> None:
        nonlocal size, truncated
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            if size < cap:
                chunks.append(chunk[: cap - size])
            if size + len(chunk) > cap:
                truncated = True
            size += len(chunk)

    try:
        await asyncio.wait_for(read(), timeout)
        code = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        text = b"".join(chunks).decode(errors="replace")
        return KubectlResult(text + f"\n(kubectl did not finish within {timeout:g}s)", 124, truncated)
    text = b"".join(chunks).decode(errors="replace")
    if truncated:
        text += f"\n(output cut at {cap} bytes)"
    return KubectlResult(text, code, truncated)
