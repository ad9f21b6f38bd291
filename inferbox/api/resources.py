"""`GET /api/admin/resources`: the platform's objects as the original web UI's platform navigator reads
them, `{pods, services, gateways, httpRoutes, inferenceServices, servingRuntimes,
clusterServingRuntimes}`, each a list of `{name, namespace, status, created, ...}`.

On Kubernetes they are the cluster's own objects (listed live: an admin page, not a hot path); on the
local runtime the same shapes describe what plays each part there: replicas are pods, a model's stable
port is its service, the gateway is the one gateway, publications are its routes, and the frameworks
the model server loads are the serving runtimes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from inferbox.api.deps import AdminDep, PlatformDep
from inferbox.blocking import in_thread
from inferbox.control.cluster import snapshot
from inferbox.server.frameworks import FRAMEWORKS
from inferbox.timefmt import iso

router = APIRouter(tags=["admin"])

Item = dict[str, Any]


@router.get(
    "/api/admin/resources",
    summary="The platform's resources by kind (pods, services, gateways, routes, models, runtimes)",
)
async def resources(_admin: AdminDep, platform: PlatformDep) -> dict[str, list[Item]]:
    runtime: Any = platform.runtime
    if runtime.name == "kubernetes":
        out: dict[str, list[Item]] = await runtime.resources()
        return out
    return await _local(platform)


async def _local(platform: Any) -> dict[str, list[Item]]:
    cluster = await snapshot(platform.models, platform.tenants, platform.runtime)
    publications = await in_thread(platform.publishing.list, None)
    pods = [
        {
            "name": r.name,
            "namespace": r.namespace,
            "status": r.phase,
            "created": iso(r.started_at),
            "ready": r.ready,
            "restarts": r.restarts,
            "model": r.model,
        }
        for r in cluster.replicas
    ]
    services = []
    isvcs = []
    for m in cluster.models:
        status = m.status
        isvcs.append(
            {
                "name": m.name,
                "namespace": m.namespace,
                "status": status.phase if status else "Unknown",
                "created": None,
                "ready": bool(status and status.ready),
                "url": status.url if status else None,
                "framework": m.framework,
            }
        )
        port = status.port if status else None
        if port is not None:
            services.append(
                {
                    "name": f"{m.name}-predictor",
                    "namespace": m.namespace,
                    "status": "Active",
                    "created": None,
                    "ports": [port],
                }
            )
    gateways = [
        {
            "name": "inferbox-gateway",
            "namespace": None,
            "status": "Programmed",
            "created": None,
            "url": platform.settings.public_gateway_url,
        }
    ]
    routes = [
        {
            "name": f"ibx-{p['namespace']}-{p['modelName']}",
            "namespace": p["namespace"],
            "status": p["status"],
            "created": p["createdAt"],
            "hostnames": [p["publicHostname"]] if p.get("publicHostname") else [],
            "path": p["externalPath"],
            "model": p["modelName"],
        }
        for p in publications
    ]
    runtimes = [
        {
            "name": f"inferbox-{name}",
            "namespace": None,
            "status": "Available",
            "created": None,
            "formats": [name],
        }
        for name in sorted(FRAMEWORKS)
    ]
    return {
        "pods": pods,
        "services": services,
        "gateways": gateways,
        "httpRoutes": routes,
        "inferenceServices": isvcs,
        "servingRuntimes": [],
        "clusterServingRuntimes": runtimes,
    }
