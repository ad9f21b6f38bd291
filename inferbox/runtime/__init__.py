"""Runtime backends: where model replicas run. The API code talks only to `Runtime` (see `base`)."""

from inferbox.runtime.base import (
    ModelNotRunning,
    ModelSpec,
    ModelStatus,
    Runtime,
    RuntimeUnavailable,
    SpecRefused,
)

__all__ = ["ModelNotRunning", "ModelSpec", "ModelStatus", "Runtime", "RuntimeUnavailable", "SpecRefused"]
