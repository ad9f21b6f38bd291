"""The Kubernetes runtime: models as KServe InferenceServices, publications as Gateway API routes."""

from inferbox.runtime.kubernetes.runtime import KubernetesRuntime, KubernetesSettings

__all__ = ["KubernetesRuntime", "KubernetesSettings"]
