"""ASGI middleware of the control plane: request context (id, metrics, access log) and the API guard
(who is calling, and whether their rate limit admits the request)."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferbox.auth.tokens import TokenError, bearer
from inferbox.logs import request_id_var
from inferbox.ratelimit import Decision, Quota

if TYPE_CHECKING:
    from inferbox.platform import Platform

log = logging.getLogger("inferbox.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


class _RequestIds:
    """Request ids: a random per-process prefix and a counter, 32 hex digits in all. Unique without
    asking the kernel for randomness on every request (uuid4 did, and showed in the profile)."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:20]
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return wrapped


class RequestContext:
    """Gives every request an id (echoing a sane `X-Request-ID`), counts it in the metrics by its route
    template, and writes one access-log line without the query string (it may carry a token)."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self._ids = _RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else self._ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                template = getattr(route, "path", None) or "<unmatched>"
                self.platform.metrics.observe(template, scope["method"], status, elapsed)
                log.info(
                    "%s %s %d %.1fms %s",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    client_address(scope),
                )
            request_id_var.reset(token)


class ApiGuard:
    """For `/api/*`: verify the bearer token once (the routes read the principal from the request
    state), then spend one request of the caller's budget: per principal when the token verified,
    else per client address. Every answer carries the rate-limit headers; a refusal is a 429."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        settings = platform.settings
        self.quotas = (
            Quota("burst", settings.rate_limit_burst, 1),
            Quota("minute", settings.rate_limit_requests, 60),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        rate_key = f"ip:{client_address(scope)}"
        authorization = _header(scope, b"authorization")
        if authorization:
            credential = bearer(authorization)
            if credential is None:
                state["auth_error"] = "Authorization header must be 'Bearer <token>'"
            else:
                try:
                    principal = await self.platform.tokens.verify_async(credential)
                except TokenError as exc:
                    state["auth_error"] = str(exc)
                else:
                    state["principal"] = principal
                    rate_key = principal.rate_key
        decision = await self.platform.limiter.hit(f"api:{rate_key}", self.quotas)
        headers = [(k.lower().encode(), v.encode()) for k, v in decision.headers("minute").items()]
        if not decision.allowed:
            await self._refuse(decision, headers, send)
            return
        await self.app(scope, receive, _with_headers(send, headers))

    async def _refuse(self, decision: Decision, headers: list[tuple[bytes, bytes]], send: Send) -> None:
        assert decision.refused_by is not None
        self.platform.metrics.rate_limited.labels(f"api:{decision.refused_by.name}").inc()
        body = orjson.dumps(
            {"error": "Rate limit exceeded", "details": f"Limit of {decision.refused_by.describe()} reached"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
