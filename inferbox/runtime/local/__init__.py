"""The local runtime: model replicas as processes on this machine (the embedded default backend)."""

from inferbox.runtime.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
