"""ASGI middleware of the control plane: request context (id, metrics, access log, the answer to an
unexpected error), body limits, and the API guard (who is calling, and whether their rate limit admits
the request)."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferbox.api.errors import ApiError, error_response, unexpected_error_response
from inferbox.auth.tokens import TokenError, bearer
from inferbox.logs import request_id_var
from inferbox.ratelimit import Decision, Quota

if TYPE_CHECKING:
    from inferbox.assembly import Platform

log = logging.getLogger("inferbox.access")
log_errors = logging.getLogger("inferbox.errors")

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
            return str(value.decode("latin-1"))
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
        started = False
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                # One log record, and an answer in the error shape on a connection that stays usable
                # (re-raising would make uvicorn log it again and drop the keep-alive connection).
                log_errors.error(
                    "unhandled error on %s %s: %s", scope.get("method"), scope["path"], exc, exc_info=exc
                )
                # Mid-answer there is nothing left to say: uvicorn closes the connection.
                if scope["type"] == "http" and not started:
                    await unexpected_error_response(request_id)(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                elapsed = time.perf_counter() - began
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


class BodyTooLarge(Exception):
    """Raised into the app by `BodyLimit` when a streamed body passes its route's limit."""


# The JSON bodies of control routes are small: a model, a publication (its metadata at most 16 KiB), a
# kubectl command. Predict takes an inference body (INFERBOX_MAX_BODY_BYTES); validate-api-key, which
# anyone may call, only a key.
CONTROL_BODY_BYTES = 64 * 1024
VALIDATE_KEY_BODY_BYTES = 4 * 1024
_PREDICT_PATH = re.compile(r"^/api/models/[^/]+/predict$")
# A console chat is a conversation's text: more than a control body, far less than an inference one.
CHAT_BODY_BYTES = 1024 * 1024
_CHAT_PATH = re.compile(r"^/api/models/[^/]+/chat$")


class BodyLimit:
    """Refuses a request body over its route's limit with 413, before it is read: at once when its
    Content-Length says so, else as soon as the streamed bytes pass the limit (whatever the app was
    about to answer is replaced by the 413). Starlette's own limiter answers such requests in plain
    text, outside the spec's error shape; this one answers like every other error."""

    def __init__(self, app: ASGIApp, *, inference_bytes: int) -> None:
        self.app = app
        self.inference_bytes = inference_bytes

    def limit_for(self, path: str) -> int:
        if _PREDICT_PATH.match(path):
            return self.inference_bytes
        if _CHAT_PATH.match(path):
            return CHAT_BODY_BYTES
        if path == "/api/validate-api-key":
            return VALIDATE_KEY_BODY_BYTES
        return CONTROL_BODY_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        refusal = error_response(
            ApiError(413, "Request body too large", f"At most {limit} bytes on this route")
        )
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await refusal(scope, receive, send)
            return
        received = 0
        exceeded = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await refusal(scope, receive, send)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not answered:
                answered = True
                await refusal(scope, receive, send)


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
