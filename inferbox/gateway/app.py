"""The gateway's ASGI app: one request's path from a caller to a replica and back.

A plain ASGI callable rather than a framework app: this is the hot path, and it needs no more than a
route lookup, a credential check, the limiter and one upstream call.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Message, Receive, Scope, Send

from inferbox.auth.tokens import TokenError, TokenService, bearer
from inferbox.control.tenants import TenantDirectory
from inferbox.gateway.actions import Action, Answer, Kind, NoAction
from inferbox.gateway.llm import LlmCalls, LlmReply, openai_headers, request_state
from inferbox.gateway.metrics import GatewayMetrics
from inferbox.gateway.routes import Route, RouteTable
from inferbox.gateway.upstream import Upstream
from inferbox.gateway.usage import UsageRecorder
from inferbox.health import Dependency
from inferbox.ratelimit import Decision, Limiter, LimiterUnavailable, Quota
from inferbox.runtime.client import REPLICA_ERRORS, ReplicaClient, failure

log = logging.getLogger("inferbox.gateway")

READY_WAIT_SECONDS = 30.0
# A health or readiness probe of a model scaled to zero hears "not ready" after this, not after the
# full wait: probes poll, and a poller wants an answer.
PROBE_WAIT_SECONDS = 2.0
UPSTREAM_TIMEOUT_SECONDS = 60.0
# The binary tensor extension: the body's first N bytes are the JSON request, tensors' bytes follow.
BINARY_HEADER = "inference-header-content-length"
_INTEGER = re.compile(r"^-?[0-9]+$")
# Refused credentials per client address: past these, the address hears 429 instead of 401, so a flood
# of guesses costs the gateway one counter increment each. Valid keys are never refused by this (a
# 256-bit key cannot be guessed; metering the failures is about cost and noise), so a caller sharing an
# address with a guesser keeps working.
AUTH_FAILURES = (Quota("invalidCredentials", 10, 1), Quota("invalidCredentialsPerMinute", 100, 60))


class Reply(Exception):
    """An answer the gateway gives itself (an error, mostly)."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


def check_binary_header(headers: dict[str, str], body_length: int) -> None:
    """The binary tensor extension's header says how many leading bytes of the body are JSON; a
    value the body cannot hold is refused here, before any replica reads past anything."""
    value = headers.get(BINARY_HEADER)
    if value is None:
        return
    text = value.strip()
    if not _INTEGER.match(text):
        raise Reply(400, _binary_error(f"{BINARY_HEADER} must be an integer, not {text[:40]!r}"))
    if text.startswith("-"):
        raise Reply(400, _binary_error(f"{BINARY_HEADER} must not be negative"))
    if len(text) > 20 or int(text) > body_length:
        raise Reply(
            400, _binary_error(f"{BINARY_HEADER} is {text[:40]}, past the body's {body_length} bytes")
        )


def _binary_error(details: str) -> dict[str, str]:
    return {"error": "Invalid inference header", "details": details}


def _loopback(scope: Scope) -> bool:
    """Gateway metrics name every tenant's published models: only a scraper on this machine sees them."""
    client = scope.get("client")
    return client is not None and client[0] in ("127.0.0.1", "::1")


class Gateway:
    def __init__(
        self,
        routes: RouteTable,
        limiter: Limiter,
        usage: UsageRecorder,
        tokens: TokenService,
        tenants: TenantDirectory,
        upstream: Upstream,
        *,
        max_body_bytes: int = 32 * 1024 * 1024,
        store_health: Dependency | None = None,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.store_health = store_health or Dependency("the store")
        self.routes = routes
        self.limiter = limiter
        self.usage = usage
        self.tokens = tokens
        self.tenants = tenants
        self.upstream = upstream
        self.metrics = GatewayMetrics()
        self.http = ReplicaClient(timeout=UPSTREAM_TIMEOUT_SECONDS)
        self.llm = LlmCalls(
            limiter,
            usage,
            upstream,
            self.metrics,
            ready_wait=READY_WAIT_SECONDS,
            timeout=UPSTREAM_TIMEOUT_SECONDS,
        )

    async def aclose(self) -> None:
        await self.http.close()
        await self.llm.aclose()

    # -- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the GatewayService around this app does start and stop
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._serve(scope, receive, tracking_send)
        except Exception as exc:
            # One line, and an answer in the error shape on a connection that stays usable.
            log.error("unhandled error on %s %s: %s", scope["method"], scope["path"], exc, exc_info=exc)
            if started:
                raise
            await self._send(send, 500, {"error": "Internal server error", "details": "Unexpected error"})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/health":
            await self._health(send)
            return
        if path == "/metrics" and scope["method"] == "GET" and _loopback(scope):
            await self._send_raw(send, 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").split(":", 1)[0].lower().rstrip(".")
        found = self.routes.match(host, path)
        if found is None:
            await self._send(send, 404, {"error": "Not found", "details": f"No published model at {path}"})
            return
        route, rest = found
        action: Action | NoAction
        try:
            action = route.actions.parse(rest)
        except NoAction as exc:
            action = exc  # answered after the credential check: see _handle
        try:
            answer = await self._handle(scope, receive, send, headers, route, action)
        except (Reply, LlmReply) as reply:
            await self._send(send, reply.status, reply.body, reply.headers)
            return
        except LimiterUnavailable as exc:
            self.metrics.requests.labels(route.namespace, route.model, "unavailable").inc()
            await self._send(
                send,
                503,
                {"error": "Service unavailable", "details": f"{exc}; try again shortly"},
                {"Retry-After": str(exc.retry_after)},
            )
            return
        if answer is not None:  # None: answered already (an openai call, perhaps streamed)
            await self._send_raw(send, *answer)

    async def _health(self, send: Send) -> None:
        """Ready when it can admit calls: Redis (when configured) must answer; while the store is down
        the gateway still serves the routes and keys it holds, so that is reported, not fatal."""
        checks: dict[str, Any] = {"store": self.store_health.view()}
        healthy = True
        if self.limiter.shared:
            healthy = await self.limiter.ping()
            assert self.limiter.redis is not None
            checks["redis"] = self.limiter.redis.view()
        degraded = any(c["status"] != "up" for c in checks.values())
        status = "unhealthy" if not healthy else "degraded" if degraded else "healthy"
        body = {"status": status, "routes": len(self.routes), "checks": checks}
        await self._send(send, 200 if healthy else 503, body)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        route: Route,
        action: Action | NoAction,
    ) -> tuple[int, bytes, str, dict[str, str]] | None:
        self._check_length(headers)
        labels = (route.namespace, route.model)
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if not await self._authorized(route, headers):
            await self._refuse_credentials(route, headers, address)
        # A wrong model name or method is told only to a caller with a credential: before it, a 404 or
        # 405 would say which name a published path serves.
        if isinstance(action, NoAction):
            raise Reply(404, {"error": "Not found", "details": action.details})
        method = action.method
        if scope["method"] != method:
            raise Reply(
                405,
                {"error": "Method not allowed", "details": f"Use {method} on this path"},
                {"Allow": method},
            )
        if action.kind is not Kind.INFERENCE:
            # Health and metadata: authenticated, never metered (a client's probes must not eat the
            # budget of its predictions), and not counted in usage.
            self.metrics.requests.labels(*labels, "free").inc()
            wait = PROBE_WAIT_SECONDS if action.kind is Kind.PROBE else READY_WAIT_SECONDS
            status, content, content_type, extra = await self._forward(route, action, b"", headers, wait)
            if action.answer is Answer.V1_LIVE and status == 200:
                return 200, b'{"status":"alive"}', "application/json", {}
            if route.model_type == "openai":
                # OpenAI's clients read where their budget stands from any answer; telling costs nothing.
                extra = {**extra, **await self._openai_headers(route, address)}
            return status, content, content_type, extra
        key = self._limit_key(route, address)
        decision = await self.limiter.hit(key, route.quotas)
        rate_headers = decision.headers("requestsPerMinute")
        if route.model_type == "openai" and not decision.allowed:
            # (An admitted call's token headers come from its reservation, in gateway/llm.py.)
            (budget,) = await self.limiter.states(key, (route.token_quota,))
            rate_headers.update(openai_headers(request_state(decision), budget))
        if not decision.allowed:
            assert decision.refused_by is not None
            self.metrics.requests.labels(*labels, "rate_limited").inc()
            self.usage.refused(route.publication_id, "rateLimited")
            quota = decision.refused_by
            raise Reply(
                429,
                {"error": "Rate limit exceeded", "details": f"{quota.name}: {quota.describe()}"},
                rate_headers,
            )
        body = await self._read_body(receive) if method == "POST" else b""
        check_binary_header(headers, len(body))
        if action.endpoint is not None:
            # Tokens are reserved, forwarded, streamed and settled there (gateway/llm.py).
            await self.llm.serve(receive, send, route, action.endpoint, key, body, headers, decision)
            self.metrics.requests.labels(*labels, "admitted").inc()
            return None
        self.metrics.requests.labels(*labels, "admitted").inc()
        started = time.perf_counter()
        try:
            status, content, content_type, extra = await self._forward(
                route, action, body, headers, READY_WAIT_SECONDS
            )
        finally:
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        self.usage.record(route.publication_id)
        return status, content, content_type, {**rate_headers, **extra}

    async def _openai_headers(self, route: Route, address: str) -> dict[str, str]:
        """Where the request and token budgets stand, in OpenAI's header names and ours, spending none."""
        key = self._limit_key(route, address)
        states = await self.limiter.states(key, (*route.quotas, route.token_quota))
        decision = Decision(True, states[:-1])
        return {
            **decision.headers("requestsPerMinute"),
            **openai_headers(request_state(decision), states[-1]),
        }

    async def _refuse_credentials(self, route: Route, headers: dict[str, str], address: str) -> None:
        """Raise the answer for a caller whose credential was missing or refused: 401, or 429 once
        the address spent its budget of refusals."""
        self.metrics.requests.labels(route.namespace, route.model, "unauthorized").inc()
        self.usage.refused(route.publication_id, "unauthorized")
        flood = await self.limiter.hit(f"gw:authfail:{address}", AUTH_FAILURES)
        if not flood.allowed:
            assert flood.refused_by is not None
            raise Reply(
                429,
                {
                    "error": "Too many invalid credentials",
                    "details": f"This address sent {flood.refused_by.describe()} that were refused",
                },
                {"Retry-After": str(flood.retry_after)},
            )
        # Nothing is spent for a refused caller, but the answer still says where the limits stand.
        states = await self.limiter.states(self._limit_key(route, address), route.quotas)
        rate = {**Decision(True, states).headers("requestsPerMinute"), "WWW-Authenticate": "ApiKey"}
        if self._credential(headers) is None:
            details = "Send the API key in X-API-Key or as Authorization: Bearer <key>"
            raise Reply(401, {"error": "Authentication required", "details": details}, rate)
        # One answer for a wrong, revoked or another model's key: no oracle.
        details = "The key is wrong, revoked, or not for this model"
        raise Reply(401, {"error": "Invalid API key", "details": details}, rate)

    def _check_length(self, headers: dict[str, str]) -> None:
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> Reply:
        return Reply(
            413,
            {
                "error": "Request body too large",
                "details": f"At most {self.max_body_bytes} bytes (INFERBOX_MAX_BODY_BYTES)",
            },
        )

    # -- credentials -----------------------------------------------------------------------------
    @staticmethod
    def _credential(headers: dict[str, str]) -> str | None:
        key = headers.get("x-api-key")
        if key:
            return key.strip()
        return bearer(headers.get("authorization"))

    async def _authorized(self, route: Route, headers: dict[str, str]) -> bool:
        credential = self._credential(headers)
        if credential is None:
            return route.public
        if credential.startswith("pk_"):
            return route.key_matches(credential, datetime.now(UTC)) or route.public
        if route.allowed_tenants:
            # A JWKS token may need a key fetch, and an unknown tenant a store query: neither may block
            # the loop every published model is served from.
            try:
                principal = await self.tokens.verify_async(credential)
            except TokenError:
                return False
            if principal.tenant not in route.allowed_tenants:
                return False
            try:
                return await self.tenants.exists_async(principal.tenant)
            except SQLAlchemyError as exc:
                self.store_health.failed(exc)
                raise Reply(
                    503,
                    {
                        "error": "Service unavailable",
                        "details": "The store is unreachable; try again shortly",
                    },
                    {"Retry-After": "5"},
                ) from None
        return route.public

    @staticmethod
    def _limit_key(route: Route, address: str) -> str:
        # A public route has no caller identity but its address: each address gets the route's limits.
        return f"gw:{route.limit_id}:ip:{address}" if route.public else f"gw:{route.limit_id}"

    # -- upstream --------------------------------------------------------------------------------
    async def _forward(
        self, route: Route, action: Action, body: bytes, headers: dict[str, str], wait: float
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """One call to a replica; the body goes as it came (JSON or binary tensors), with the headers
        that say how to read it, and the answer's own such headers come back."""
        send_headers = {"content-type": headers.get("content-type", "application/json")}
        binary = headers.get(BINARY_HEADER) if action.method == "POST" else None
        if binary is not None:
            send_headers[BINARY_HEADER] = binary.strip()
        request_id = headers.get("x-request-id")
        if request_id:
            send_headers["x-request-id"] = request_id
        try:
            answer = await self.http.call(
                lambda: self.upstream.connect(route, wait), action.method, action.upstream, body, send_headers
            )
        except REPLICA_ERRORS as exc:
            f = failure(exc)
            raise Reply(f.status, {"error": f.error, "details": f.details}, f.headers) from None
        extra = {} if answer.binary_header is None else {BINARY_HEADER: answer.binary_header}
        return answer.status, answer.body, answer.content_type, extra

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    # -- answers ---------------------------------------------------------------------------------
    async def _send(
        self, send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        await self._send_raw(send, status, orjson.dumps(body), "application/json", headers)

    @staticmethod
    async def _send_raw(
        send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        raw.extend((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
