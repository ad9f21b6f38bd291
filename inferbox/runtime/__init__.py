"""Runtime backends: where model replicas run. The API code talks only to `Runtime` (see `base`)."""

from inferbox.runtime.base import (
    Condition,
    ModelNotRunning,
    ModelSpec,
    ModelStatus,
    NodeInfo,
    ReplicaInfo,
    Runtime,
    SpecRefused,
)

__all__ = [
    "Condition",
    "ModelNotRunning",
    "ModelSpec",
    "ModelStatus",
    "NodeInfo",
    "ReplicaInfo",
    "Runtime",
    "SpecRefused",
]
