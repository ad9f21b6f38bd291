"""Environments for processes that must not see some installed packages (the missing-extra paths).

A skip "because torch is installed here" would never run where the test extra is installed, so the
tests start the replica or control plane with the packages hidden instead (see
`tests/hidden_packages/sitecustomize.py`) and assert what a user of such an install sees.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent / "hidden_packages"


def env_hiding(*packages: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``packages`` hidden from Python."""
    env = dict(os.environ if base is None else base)
    # First on the path, so the shim's sitecustomize is the one imported; the rest (the worktree) stays.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SHIM_DIR), env.get("PYTHONPATH", "")]))
    env["INFERBOX_TEST_HIDDEN_PACKAGES"] = ",".join(packages)
    return env
