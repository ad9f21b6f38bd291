"""Admin routes: the system view, kubectl, the audit log and the service's own recent log lines.

All of them are for the platform admin only: a tenant gets 403, a caller without a valid token 401.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from inferbox.api.deps import AdminDep, PlatformDep, actor_of
from inferbox.api.errors import ApiError, bad_request
from inferbox.blocking import in_thread
from inferbox.control.audit import DENIED, FAILURE, SUCCESS
from inferbox.control.cluster import snapshot
from inferbox.logs import MAX_LOG_LINES, scrub
from inferbox.runtime.kubectl import guard
from inferbox.runtime.local import kubectl as local_kubectl
from inferbox.timefmt import iso

if TYPE_CHECKING:
    from inferbox.runtime.kubernetes.kubectl import KubectlResult
    from inferbox.runtime.local.kubectl.verbs import Answer

router = APIRouter(tags=["admin"])
log = logging.getLogger("inferbox.admin")

MAX_AUDIT_ENTRIES = 1000
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")
# The command text kept in the audit log: enough to read what was asked, bounded like the column.
AUDIT_COMMAND_CHARS = 1000


# -- system ---------------------------------------------------------------------------------------------


class Resources(BaseModel):
    cpu: str = Field(description='CPU cores, as Kubernetes writes quantities ("8")')
    memory: str = Field(description='Memory, as Kubernetes writes quantities ("16Gi")')


class NodeOut(BaseModel):
    name: str
    status: str = Field(description="Ready or NotReady")
    version: str
    capacity: Resources
    allocatable: Resources


class NamespaceOut(BaseModel):
    name: str
    status: str = Field(description="Active")
    created: str | None


class DeploymentOut(BaseModel):
    name: str = Field(description="{model}-predictor")
    namespace: str
    ready: int = Field(description="replicas ready to serve")
    replicas: int = Field(description="replicas wanted now (the autoscaler's choice within the bounds)")
    available: int = Field(description="replicas available to callers")


class SystemInfo(BaseModel):
    nodes: list[NodeOut]
    namespaces: list[NamespaceOut]
    deployments: list[DeploymentOut]


@router.get(
    "/api/admin/system",
    response_model=SystemInfo,
    summary="System information: nodes, namespaces (tenants), deployments (models)",
)
async def system(_admin: AdminDep, platform: PlatformDep) -> SystemInfo:
    cluster = await snapshot(platform.models, platform.tenants, platform.runtime)
    return SystemInfo(
        nodes=[
            NodeOut(
                name=n.name,
                status=n.status,
                version=n.version,
                capacity=Resources(cpu=n.capacity_cpu, memory=n.capacity_memory),
                allocatable=Resources(cpu=n.allocatable_cpu, memory=n.allocatable_memory),
            )
            for n in cluster.nodes
        ],
        namespaces=[
            NamespaceOut(name=t.name, status=t.status, created=iso(t.created)) for t in cluster.namespaces
        ],
        deployments=[
            DeploymentOut(
                name=m.deployment,
                namespace=m.namespace,
                ready=m.ready_replicas,
                replicas=m.desired,
                available=m.ready_replicas,
            )
            for m in cluster.models
        ],
    )


# -- kubectl --------------------------------------------------------------------------------------------


class KubectlRequest(BaseModel):
    command: str = Field(
        max_length=guard.MAX_COMMAND_LENGTH,
        description="A kubectl command, with or without the leading `kubectl`: `get pods -n tenant-a`. "
        "Split into words like a shell would, never run by one. Read verbs only: "
        + ", ".join(guard.ALLOWED_VERBS),
        examples=["get pods -n tenant-a"],
    )


class KubectlResponse(BaseModel):
    result: str = Field(description="What kubectl prints (its errors too, such as an unknown resource type)")
    command: str


@router.post(
    "/api/admin/kubectl",
    response_model=KubectlResponse,
    summary="Run a read-only kubectl command",
    description='Refused commands answer 400 `{"error": "Command not allowed", "details": <why>}`: '
    "verbs that change things, secrets, flags that leave the admin's view (`--server`, `--token`, "
    "`--kubeconfig`, `--as`, `--raw`, templates, …) and shell metacharacters. Every command, allowed or "
    "refused, is audited as `admin.kubectl`.",
)
async def kubectl(
    body: KubectlRequest, request: Request, admin: AdminDep, platform: PlatformDep
) -> KubectlResponse:
    actor = actor_of(admin, request)
    text = scrub(body.command)[:AUDIT_COMMAND_CHARS]
    try:
        command = guard.parse(body.command)
    except guard.CommandRefused as exc:
        platform.audit.record(
            actor, "admin.kubectl", DENIED, target=None, details={"command": text, "reason": exc.reason}
        )
        raise ApiError(400, "Command not allowed", exc.reason) from None
    answer: KubectlResult | Answer
    try:
        if platform.runtime.name == "kubernetes":
            # The real binary, after the same guard (lightkube, which its package needs, is an extra).
            from inferbox.runtime.kubernetes.kubectl import run_kubectl

            answer = await run_kubectl(command.argv, kubeconfig=platform.settings.kubeconfig)
        else:
            cluster = await snapshot(platform.models, platform.tenants, platform.runtime)
            # The local runtime reads one replica's lines (`logs(..., replica=)`), beyond the protocol.
            answer = await local_kubectl.answer(command, cluster, platform.runtime)  # type: ignore[arg-type]
    except Exception as exc:
        platform.audit.record(
            actor,
            "admin.kubectl",
            FAILURE,
            target=command.verb,
            details={"command": text, "reason": type(exc).__name__},
        )
        raise
    platform.audit.record(
        actor,
        "admin.kubectl",
        SUCCESS,
        target=command.verb,
        details={"command": text, "exitCode": answer.exit_code},
    )
    return KubectlResponse(result=answer.text, command=body.command)


# -- audit ----------------------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    id: int
    timestamp: str = Field(description="RFC 3339, UTC")
    actor: str = Field(description="who: the admin's username, a tenant user's subject, or anonymous")
    tenant: str | None = Field(description="the tenant acted on (or the actor's own)")
    action: str = Field(description="e.g. auth.login, tenant.create, model.update, admin.kubectl")
    target: str | None
    outcome: str = Field(description="success, failure or denied")
    requestId: str | None
    sourceIp: str | None
    details: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditEntryOut] = Field(description="newest first")
    count: int


_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# The audit log is not older than inferbox: a duration further back than this means "everything".
MAX_SINCE = timedelta(days=36500)


def parse_since(value: str, now: datetime) -> datetime:
    """An RFC 3339 time (`2024-01-01T00:00:00Z`; no zone means UTC) or a duration back from now (`90s`,
    `15m`, `2h`, `7d`, as `kubectl logs --since`), at most a century back."""
    text = value.strip()
    shape = "Field 'since' must be an RFC 3339 time (2024-01-01T00:00:00Z) or a duration such as 15m"
    if m := _DURATION.match(text):
        if len(m.group(1)) > 12:
            raise bad_request(f"{shape}, at most {MAX_SINCE.days} days back")
        back = timedelta(seconds=int(m.group(1)) * _SECONDS[m.group(2)])
        if back > MAX_SINCE:
            raise bad_request(f"{shape}, at most {MAX_SINCE.days} days back")
        return now - back
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_request(shape) from None


@router.get(
    "/api/admin/audit",
    response_model=AuditList,
    summary="The audit log, newest first",
)
async def audit(
    _admin: AdminDep,
    platform: PlatformDep,
    limit: int = Query(100, ge=1, description=f"how many entries (at most {MAX_AUDIT_ENTRIES})"),
    tenant: str | None = Query(None, max_length=63, description="only this tenant's entries"),
    action: str | None = Query(None, max_length=64, description="only this action, e.g. auth.login"),
    since: str | None = Query(None, max_length=64, description="RFC 3339 time, or a duration back: 15m, 2h"),
) -> AuditList:
    start = parse_since(since, datetime.now(UTC)) if since else None
    rows = await in_thread(
        platform.audit.query, limit=min(limit, MAX_AUDIT_ENTRIES), tenant=tenant, action=action, since=start
    )
    entries = [AuditEntryOut(**e.view()) for e in rows]
    return AuditList(entries=entries, count=len(entries))


# -- logs -----------------------------------------------------------------------------------------------


class LogLine(BaseModel):
    timestamp: str
    level: str
    logger: str
    message: str


class LogList(BaseModel):
    lines: list[LogLine] = Field(description="oldest first; secrets are masked before lines are kept")
    logs: list[str] = Field(description="the same lines as text: `timestamp LEVEL logger: message`")
    count: int


def _text(line: LogLine) -> str:
    return f"{line.timestamp} {line.level.upper()} {line.logger}: {line.message}"


@router.get(
    "/api/admin/logs",
    response_model=LogList,
    summary="The service's own recent log lines",
)
def service_logs(
    _admin: AdminDep,
    platform: PlatformDep,
    lines: int = Query(100, ge=1, description=f"how many lines (at most {MAX_LOG_LINES})"),
    level: str | None = Query(None, description="the lowest level: debug, info, warning, error"),
) -> LogList:
    if level is not None and level.lower() not in LOG_LEVELS:
        raise bad_request(f"Field 'level' must be one of {', '.join(LOG_LEVELS)}")
    floor = "warning" if level and level.lower() == "warn" else level
    entries = [LogLine(**e) for e in platform.recent_logs.tail(min(lines, MAX_LOG_LINES), floor)]
    return LogList(lines=entries, logs=[_text(e) for e in entries], count=len(entries))


# -- the gateway's address ------------------------------------------------------------------------------


class ServicePort(BaseModel):
    name: str
    port: int
    targetPort: int
    protocol: str = Field("TCP", description="TCP")


class GatewayServiceOut(BaseModel):
    """The gateway as a Kubernetes Service would describe it, for examples that point a name at it
    (`curl --resolve`, the console's DNS overrides)."""

    name: str
    namespace: str
    type: str = Field(description="ClusterIP: the address below is where this machine's gateway listens")
    clusterIP: str = Field(description="the address to send a published model's name to")
    ports: list[ServicePort]
    gateway: str = Field(description="which gateway answers: inferbox")
    externalUrl: str = Field(description="the base of published models' externalUrl (INFERBOX_GATEWAY_URL)")
    externalHostname: str | None = Field(description="the host of externalUrl")


@router.get(
    "/api/admin/ai-gateway-service",
    response_model=GatewayServiceOut,
    summary="The gateway's address and ports (for DNS-override examples)",
)
async def gateway_service(_admin: AdminDep, platform: PlatformDep) -> GatewayServiceOut:
    settings = platform.settings
    # Listening on every address: loopback is the one that surely reaches it from this machine.
    address = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    external = settings.public_gateway_url
    return GatewayServiceOut(
        name="inferbox-gateway",
        namespace="inferbox",
        type="ClusterIP",
        clusterIP=address,
        ports=[ServicePort(name="http", port=settings.gateway_port, targetPort=settings.gateway_port)],
        gateway="inferbox",
        externalUrl=external,
        externalHostname=urlsplit(external).hostname,
    )
