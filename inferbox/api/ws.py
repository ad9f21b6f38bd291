"""`/ws`: the event stream. Model and publication events, as they happen, to authenticated sockets.

A socket authenticates with `?token=`, an `Authorization: Bearer` header, or a first message
`{"token": "..."}` within a few seconds; otherwise it is closed with code 4401 before it hears anything.
A tenant hears its own tenant's events only; the admin hears every tenant's, and either may narrow what
it hears with `{"subscribe": {"namespaces": [...], "types": [...]}}`. See docs/websocket.md.

Each socket reads the event bus through its own bounded queue: a client that does not keep up is dropped
by the bus (the publisher and the other sockets never wait for it) and its socket is closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from inferbox.assembly import Platform
from inferbox.auth.principal import Principal
from inferbox.auth.tokens import TokenError, bearer
from inferbox.control.audit import DENIED, Actor
from inferbox.control.events import EVENT_TYPES, Event, Subscription
from inferbox.logs import scrub_data
from inferbox.timefmt import iso_now

router = APIRouter()
log = logging.getLogger("inferbox.ws")

# Close codes (4000-4999 are the application's; 4401 mirrors HTTP 401).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TRY_AGAIN_LATER = 1013  # the client fell behind; reconnect

# A single send that takes this long means the client stopped reading.
SEND_TIMEOUT_SECONDS = 10.0
# While a send is blocked, how often to look whether the bus dropped the subscriber.
DROP_CHECK_SECONDS = 0.25


def _now() -> str:
    return iso_now()


def event_message(event: Event) -> dict[str, Any]:
    message = event.to_json()
    message["data"] = scrub_data(message["data"])
    return message


@dataclass(frozen=True)
class Interest:
    """What a socket wants to hear: namespaces (None: every one it may see) and event types."""

    namespaces: frozenset[str] | None
    types: frozenset[str]

    def wants(self, event: Event) -> bool:
        return (self.namespaces is None or event.namespace in self.namespaces) and event.type in self.types

    def to_json(self) -> dict[str, Any]:
        return {
            "namespaces": None if self.namespaces is None else sorted(self.namespaces),
            "types": sorted(self.types),
        }


def default_interest(principal: Principal) -> Interest:
    namespaces = None if principal.is_admin else frozenset({principal.tenant})
    return Interest(namespaces, frozenset(EVENT_TYPES))


class SubscribeRefused(ValueError):
    pass


def narrowed(principal: Principal, request: Any) -> Interest:
    """The interest a `subscribe` message asks for, within what the principal may see. A missing or
    null field means everything allowed; `model.*` names every model event."""
    if not isinstance(request, dict):
        raise SubscribeRefused("'subscribe' must be an object with 'namespaces' and/or 'types'")
    unknown = sorted(set(request) - {"namespaces", "types"})
    if unknown:
        raise SubscribeRefused(f"unknown field '{unknown[0]}' in 'subscribe'")
    base = default_interest(principal)
    namespaces = base.namespaces
    given_ns = request.get("namespaces")
    if given_ns is not None:
        if not isinstance(given_ns, list) or not all(isinstance(n, str) for n in given_ns):
            raise SubscribeRefused("'namespaces' must be a list of names")
        if given_ns:
            wanted = frozenset(given_ns)
            if base.namespaces is not None and not wanted <= base.namespaces:
                raise SubscribeRefused(f"a tenant hears only its own namespace '{principal.tenant}'")
            namespaces = wanted
    types = base.types
    given_types = request.get("types")
    if given_types is not None:
        if not isinstance(given_types, list) or not all(isinstance(t, str) for t in given_types):
            raise SubscribeRefused("'types' must be a list of event types")
        if given_types:
            chosen: set[str] = set()
            for name in given_types:
                if name.endswith(".*"):
                    matches = {t for t in EVENT_TYPES if t.startswith(name[:-1])}
                else:
                    matches = {name} & set(EVENT_TYPES)
                if not matches:
                    raise SubscribeRefused(f"unknown event type '{name}'; known: {', '.join(EVENT_TYPES)}")
                chosen |= matches
            types = frozenset(chosen)
    return Interest(namespaces, types)


@dataclass(frozen=True)
class Close:
    """Why the server ends a socket."""

    code: int
    reason: str


SLOW_CONSUMER = Close(CLOSE_TRY_AGAIN_LATER, "Too slow: events were dropped; reconnect")


class EventPump:
    """Moves events from a bus subscription to one socket, in order, filtered by its interest.

    It never blocks the publisher: the bus drops the subscription when its queue is full. `run` ends
    with SLOW_CONSUMER when that happens or when one send stalls, and with None when the socket is gone.
    """

    def __init__(
        self,
        subscription: Subscription,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        wants: Callable[[Event], bool],
        *,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
        drop_check: float = DROP_CHECK_SECONDS,
    ) -> None:
        self.subscription = subscription
        self.send = send
        self.wants = wants
        self.send_timeout = send_timeout
        self.drop_check = drop_check

    async def run(self) -> Close | None:
        sub = self.subscription
        while True:
            event = await sub.get()
            if event is None:
                return SLOW_CONSUMER if sub.dropped else None
            if not self.wants(event):
                continue
            outcome = await self._deliver(event_message(event))
            if outcome != "sent":
                return SLOW_CONSUMER if outcome == "slow" else None

    async def _deliver(self, message: dict[str, Any]) -> str:
        """'sent', 'slow' (the send stalled or the bus gave up on us meanwhile) or 'gone'."""
        sub = self.subscription
        task = asyncio.ensure_future(self.send(message))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.drop_check)
                if done:
                    return "gone" if task.exception() is not None else "sent"
                if sub.dropped or loop.time() >= deadline:
                    return "slow"
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


class EventSocket:
    """One client's socket, from handshake to close."""

    def __init__(self, websocket: WebSocket, platform: Platform) -> None:
        self.ws = websocket
        self.platform = platform
        self.principal: Principal | None = None
        self.interest: Interest | None = None
        self._send_lock = asyncio.Lock()
        settings = platform.settings
        self.auth_timeout = settings.ws_auth_timeout_seconds
        self.ping_seconds = settings.ws_ping_seconds
        self.queue_size = settings.ws_queue_size
        self.send_timeout = settings.ws_send_timeout_seconds

    @property
    def address(self) -> str:
        client = self.ws.client
        return client.host if client else "unknown"

    async def send(self, message: dict[str, Any]) -> None:
        # One writer at a time: the pump, the pinger and replies all share the socket.
        async with self._send_lock:
            await self.ws.send_text(orjson.dumps(message).decode())

    async def close(self, close: Close) -> None:
        # A client that stopped reading may never take the close frame: do not wait for it long.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(close.code, close.reason), 2.0)

    # -- authentication --------------------------------------------------------------------------

    def _handshake_token(self) -> tuple[str | None, str | None]:
        """(token, problem) from the Authorization header, else the `token` query parameter."""
        header = self.ws.headers.get("authorization")
        if header:
            credential = bearer(header)
            if credential is None:
                return None, "Authorization header must be 'Bearer <token>'"
            return credential, None
        token = self.ws.query_params.get("token")
        return (token or None), None

    async def _first_message_token(self) -> str | None:
        try:
            message = await asyncio.wait_for(self.ws.receive(), self.auth_timeout)
        except TimeoutError:
            await self.close(Close(CLOSE_UNAUTHENTICATED, "Authentication required: no token in time"))
            return None
        if message["type"] == "websocket.disconnect":
            return None
        token = None
        with contextlib.suppress(orjson.JSONDecodeError, TypeError):
            body = orjson.loads(message.get("text") or message.get("bytes") or b"")
            if isinstance(body, dict) and isinstance(body.get("token"), str):
                token = body["token"]
        if not token:
            await self.close(Close(CLOSE_UNAUTHENTICATED, 'Authentication required: send {"token": "..."}'))
        return token

    def _refused(self, subject: str, tenant: str | None, reason: str) -> None:
        self.platform.audit.record(
            Actor(subject, tenant, self.address),
            "auth.tokenRefused",
            DENIED,
            target="/ws",
            details={"reason": reason},
        )

    async def authenticate(self) -> Principal | None:
        token, problem = self._handshake_token()
        if problem is not None:
            self._refused("anonymous", None, problem)
            await self.close(Close(CLOSE_UNAUTHENTICATED, problem))
            return None
        if token is None:
            token = await self._first_message_token()
            if token is None:
                return None
        try:
            principal = await self.platform.tokens.verify_async(token)
        except TokenError as exc:
            self._refused("anonymous", None, str(exc))
            await self.close(Close(CLOSE_UNAUTHENTICATED, str(exc)[:100]))
            return None
        if not principal.is_admin and not await self.platform.tenants.exists_async(principal.tenant):
            self._refused(principal.subject, principal.tenant, "unknown tenant")
            await self.close(Close(CLOSE_UNAUTHENTICATED, "Unknown tenant"))
            return None
        return principal

    # -- after authentication --------------------------------------------------------------------

    async def _receive_loop(self) -> Close | None:
        assert self.principal is not None
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is None:
                await self._error("Invalid message", "Send JSON text messages")
                continue
            try:
                body = orjson.loads(text)
            except orjson.JSONDecodeError:
                await self._error("Invalid message", "Messages must be JSON objects")
                continue
            if not isinstance(body, dict):
                await self._error("Invalid message", "Messages must be JSON objects")
            elif "subscribe" in body:
                try:
                    self.interest = narrowed(self.principal, body["subscribe"])
                except SubscribeRefused as exc:
                    await self._error("Subscription refused", str(exc))
                else:
                    await self.send({"type": "subscribed", **self.interest.to_json(), "timestamp": _now()})
            elif body.get("type") == "ping":
                await self.send({"type": "pong", "timestamp": _now()})
            elif body.get("type") == "pong" or "token" in body:
                continue  # an answer to our ping, or a client that sends its token again
            else:
                await self._error("Invalid message", "Known messages: subscribe, ping, pong")

    async def _error(self, error: str, details: str) -> None:
        await self.send({"type": "error", "error": error, "details": details, "timestamp": _now()})

    async def _ping_loop(self) -> Close | None:
        assert self.principal is not None
        while True:
            await asyncio.sleep(self.ping_seconds)
            # A tenant deleted while its socket is open stops hearing anything from then on.
            if not self.principal.is_admin and not await self.platform.tenants.exists_async(
                self.principal.tenant
            ):
                return Close(CLOSE_UNAUTHENTICATED, "Unknown tenant")
            await self.send({"type": "ping", "timestamp": _now()})

    async def _expiry(self) -> Close | None:
        assert self.principal is not None
        expires = self.principal.expires_at
        if expires is None:
            await asyncio.Event().wait()  # never
            return None
        await asyncio.sleep(max((expires - datetime.now(UTC)).total_seconds(), 0))
        return Close(CLOSE_UNAUTHENTICATED, "Token expired")

    def _wants(self, event: Event) -> bool:
        return self.interest is not None and self.interest.wants(event)

    async def run(self) -> None:
        await self.ws.accept()
        principal = await self.authenticate()
        if principal is None:
            return
        self.principal = principal
        self.interest = default_interest(principal)
        # Subscribe before the welcome: whatever the client does after reading it is heard.
        subscription = self.platform.events.subscribe(maxsize=self.queue_size)
        tasks: list[asyncio.Task[Close | None]] = []
        try:
            await self.send(
                {
                    "type": "welcome",
                    "tenant": principal.tenant,
                    "isAdmin": principal.is_admin,
                    "user": principal.subject,
                    **self.interest.to_json(),
                    "timestamp": _now(),
                }
            )
            pump = EventPump(subscription, self.send, self._wants, send_timeout=self.send_timeout)
            tasks = [
                asyncio.create_task(pump.run(), name="ws pump"),
                asyncio.create_task(self._receive_loop(), name="ws receive"),
                asyncio.create_task(self._ping_loop(), name="ws ping"),
                asyncio.create_task(self._expiry(), name="ws expiry"),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            close: Close | None = None
            for task in done:
                if task.cancelled():
                    continue
                if task.exception() is not None:
                    if not isinstance(task.exception(), WebSocketDisconnect | OSError | RuntimeError):
                        log.warning("event socket failed: %r", task.exception())
                    continue
                close = close or task.result()
            if close is not None:
                if close is SLOW_CONSUMER:
                    log.warning("event socket of %s closed: it fell behind", principal.subject)
                await self.close(close)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away
        finally:
            subscription.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task


@router.websocket("/ws")
async def events_socket(websocket: WebSocket) -> None:
    """The event stream (documented in docs/websocket.md; WebSockets are not part of OpenAPI)."""
    await EventSocket(websocket, websocket.app.state.platform).run()
