"""The Kubernetes objects inferbox writes, as plain dicts: one function per kind, no I/O.

Kept apart from the runtime so that the tests validate exactly what is sent (against the CRD schemas in
`../shared/crds/`), and so that reconciling compares the desired object with the observed one field by
field. Every object carries `app.kubernetes.io/managed-by: inferbox` and the tenant, which is how the
runtime finds what it made (and never touches what it did not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferbox.runtime.base import ModelSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "inferbox"
TENANT_LABEL = "inferbox.io/tenant"
MODEL_LABEL = "inferbox.io/model"
# On a namespace inferbox created itself (deleting the tenant deletes it); without it, a namespace that
# existed before only loses inferbox's labels.
CREATED_LABEL = "inferbox.io/created"
ISVC_LABEL = "serving.kserve.io/inferenceservice"

ISVC_API = "serving.kserve.io/v1beta1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_API = "gateway.envoyproxy.io/v1alpha1"

# KServe's scale metrics, as its API names them (`rps` is spelled the same; cpu and memory use the HPA).
SCALE_METRICS = ("concurrency", "rps", "cpu", "memory")


# inferbox's task names (the pipeline's) as KServe's huggingface server spells its `--task`: it looks
# the value up by name in its `MLTask` enum, so `text-generation` would fail to start there.
KSERVE_HF_TASKS = {
    "text-generation": "text_generation",
    "feature-extraction": "text_embedding",
    "text-classification": "sequence_classification",
}


def labels(tenant: str, model: str | None = None) -> dict[str, str]:
    out = {MANAGED_BY: MANAGER, TENANT_LABEL: tenant}
    if model is not None:
        out[MODEL_LABEL] = model
    return out


def namespace(tenant: str, *, created: bool) -> dict[str, Any]:
    meta_labels = labels(tenant)
    if created:
        meta_labels[CREATED_LABEL] = "true"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant, "labels": meta_labels}}


def inference_service_spec(spec: ModelSpec) -> dict[str, Any]:
    """The `spec` inferbox owns: the whole of it, so a merge patch of it puts back any drift."""
    model: dict[str, Any] = {"modelFormat": {"name": spec.framework}, "storageUri": spec.storage_uri}
    if spec.framework == "huggingface":
        # Always written for this framework (`[]` without a task): a merge patch replaces a list
        # whole, so clearing the task clears it in the cluster too.
        task = spec.args.get("task")
        model["args"] = [f"--task={KSERVE_HF_TASKS.get(task, task)}"] if task else []
    return {
        "predictor": {
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "scaleTarget": spec.scale_target,
            "scaleMetric": spec.scale_metric,
            "model": model,
        }
    }


def inference_service(spec: ModelSpec) -> dict[str, Any]:
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels(spec.namespace, spec.name),
            "annotations": {"inferbox.io/generation": str(spec.generation)},
        },
        "spec": inference_service_spec(spec),
    }


@dataclass(frozen=True)
class ServiceRef:
    """A Service by `namespace/name:port` (the inferbox gateway's, or the control plane's)."""

    namespace: str
    name: str
    port: int

    @classmethod
    def parse(cls, value: str) -> ServiceRef:
        where, _, port = value.rpartition(":")
        ns, _, name = where.partition("/")
        if not (ns and name and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"must be namespace/name:port, got {value!r}")
        return cls(ns, name, int(port))


@dataclass(frozen=True)
class Publication:
    """What the Gateway API objects of one publication are made of (read from the store)."""

    tenant: str
    model: str
    external_path: str
    public_hostname: str | None
    burst_limit: int | None
    requests_per_minute: int | None
    requests_per_hour: int | None


def publication_name(tenant: str, model: str) -> str:
    """Every object of a publication is named after both: two tenants' sets never collide, even in a
    shared namespace (the inferbox gateway's)."""
    return f"ibx-{tenant}-{model}"[:253]


def _owner(isvc: dict[str, Any]) -> list[dict[str, Any]]:
    meta = isvc["metadata"]
    return [
        {
            "apiVersion": ISVC_API,
            "kind": "InferenceService",
            "name": meta["name"],
            "uid": meta["uid"],
            "blockOwnerDeletion": True,
        }
    ]


def _service(ref: ServiceRef) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": ref.name, "namespace": ref.namespace, "port": ref.port}


def _rule(match: dict[str, Any], backend: ServiceRef, rewrite: dict[str, Any] | None) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": [{"path": match}], "backendRefs": [_service(backend)]}
    if rewrite is not None:
        rule["filters"] = [{"type": "URLRewrite", "urlRewrite": {"path": rewrite}}]
    return rule


def http_route(
    pub: Publication,
    *,
    gateway: tuple[str, str],
    backend: ServiceRef,
    direct: bool,
    owner: dict[str, Any],
) -> dict[str, Any]:
    """The route of a publication: `publicHostname`, PathPrefix `externalPath`, to `backend`.

    `direct` (envoy mode, straight to the predictor's Service): the paths the inferbox gateway serves
    are rewritten to the model's own (`{externalPath}/predict` to V1 `:predict`, `/infer` to V2, the rest
    of the prefix to the V2 model path, for its metadata)."""
    ext = pub.external_path
    if direct:
        name = pub.model
        rules = [
            _rule(
                {"type": "Exact", "value": f"{ext}/predict"},
                backend,
                {"type": "ReplaceFullPath", "replaceFullPath": f"/v1/models/{name}:predict"},
            ),
            _rule(
                {"type": "Exact", "value": f"{ext}/infer"},
                backend,
                {"type": "ReplaceFullPath", "replaceFullPath": f"/v2/models/{name}/infer"},
            ),
            _rule(
                {"type": "PathPrefix", "value": ext},
                backend,
                {"type": "ReplacePrefixMatch", "replacePrefixMatch": f"/v2/models/{name}"},
            ),
        ]
    else:
        rules = [_rule({"type": "PathPrefix", "value": ext}, backend, None)]
    spec: dict[str, Any] = {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": gateway[0],
                "name": gateway[1],
            }
        ],
        "rules": rules,
    }
    if pub.public_hostname:
        spec["hostnames"] = [pub.public_hostname]
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _meta(pub, owner),
        "spec": spec,
    }


def _meta(pub: Publication, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": publication_name(pub.tenant, pub.model),
        "namespace": pub.tenant,
        "labels": labels(pub.tenant, pub.model),
        "ownerReferences": _owner(owner),
    }


def _target(pub: Publication) -> list[dict[str, str]]:
    return [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "HTTPRoute",
            "name": publication_name(pub.tenant, pub.model),
        }
    ]


# The headers /api/validate-api-key answers with, which Envoy forwards to the model and keys limits on.
KEY_ID_HEADER = "x-inferbox-key-id"
FORWARDED_HEADERS = ("x-inferbox-tenant", "x-inferbox-model", KEY_ID_HEADER)


def security_policy(pub: Publication, *, auth: ServiceRef, owner: dict[str, Any]) -> dict[str, Any]:
    """Envoy's external authorization, calling inferbox's `/api/validate-api-key`: the keys stay hashed in
    inferbox (Envoy Gateway's own apiKeyAuth would need every key in plain text in a Secret)."""
    return {
        "apiVersion": ENVOY_API,
        "kind": "SecurityPolicy",
        "metadata": _meta(pub, owner),
        "spec": {
            "targetRefs": _target(pub),
            "extAuth": {
                "headersToExtAuth": ["x-api-key", "authorization"],
                "http": {
                    "backendRefs": [_service(auth)],
                    "path": "/api/validate-api-key",
                    "headersToBackend": list(FORWARDED_HEADERS),
                },
            },
        },
    }


def backend_traffic_policy(pub: Publication, *, owner: dict[str, Any]) -> dict[str, Any] | None:
    """Global rate limits per API key (Envoy's rate-limit service, keyed on the key id that extAuth set),
    one rule per configured window; None when the publication sets no limit."""
    rules = []
    for value, unit in (
        (pub.burst_limit, "Second"),
        (pub.requests_per_minute, "Minute"),
        (pub.requests_per_hour, "Hour"),
    ):
        if value:
            rules.append(
                {
                    "clientSelectors": [{"headers": [{"name": KEY_ID_HEADER, "type": "Distinct"}]}],
                    "limit": {"requests": value, "unit": unit},
                }
            )
    if not rules:
        return None
    return {
        "apiVersion": ENVOY_API,
        "kind": "BackendTrafficPolicy",
        "metadata": _meta(pub, owner),
        "spec": {"targetRefs": _target(pub), "rateLimit": {"type": "Global", "global": {"rules": rules}}},
    }


def reference_grant(tenant: str, services: list[ServiceRef]) -> dict[str, Any]:
    """Lets the tenant's routes and policies point at inferbox's Services (the gateway's, and the
    control plane's for extAuth) in inferbox's own namespace."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {
            "name": f"ibx-{tenant}-routes"[:253],
            "namespace": services[0].namespace,
            "labels": labels(tenant),
        },
        "spec": {
            "from": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": tenant},
                {"group": "gateway.envoyproxy.io", "kind": "SecurityPolicy", "namespace": tenant},
            ],
            "to": [{"group": "", "kind": "Service", "name": s.name} for s in services],
        },
    }
