"""The local runtime: model replicas as processes on this machine (the embedded default backend)."""

from inferbox.runtime.local.runtime import LocalRuntime
from inferbox.runtime.local.supervisor import RuntimeSettings

__all__ = ["LocalRuntime", "RuntimeSettings"]
