"""This machine as kubectl reports a node's system: OS image, kernel, architecture.

Read from the Python standard library and /etc/os-release; each figure degrades to a placeholder where
it cannot be read, so that an answer is always printed.
"""

from __future__ import annotations

import platform


def os_image() -> str:
    """The distribution's pretty name (`Ubuntu 24.04 LTS`), else the system's name."""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system() or "<unknown>"


def arch() -> str:
    """The architecture in Go's names, as Kubernetes labels it (`amd64`, `arm64`)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine or "unknown")


def operating_system() -> str:
    """`linux`, `darwin`, … (empty where Python cannot tell)."""
    return platform.system().lower()


def kernel() -> str:
    return platform.release()
