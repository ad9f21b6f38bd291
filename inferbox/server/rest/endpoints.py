"""What every REST endpoint shares: the ASGI types, the route record, the error answer, the host
interface an endpoint asks for its model, and reading a bounded body."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from inferbox.server.batching import Batcher
from inferbox.server.errors import InferenceError
from inferbox.server.inference import run_framework
from inferbox.server.model import Model
from inferbox.server.protocol import dumps

__all__ = ["run_framework"]  # re-exported for the endpoints

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
# status, body, content type, and optionally more response headers
Response = tuple[int, bytes, bytes] | tuple[int, bytes, bytes, Headers]


@dataclass(eq=False)
class Streamed:
    """An answer sent in chunks as they are produced (server-sent events). The app sends each chunk
    as it comes and closes ``chunks`` when the client disconnects, so the producer can stop."""

    status: int
    content_type: bytes
    chunks: AsyncGenerator[bytes, None]
    headers: Headers = field(default_factory=list)


Handler = Callable[[Scope, Receive], Awaitable[Response | Streamed]]

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"


class Route(NamedTuple):
    endpoint: str  # the metrics label
    method: str
    handler: Handler
    inference: bool  # counted in /inferbox/stats and announced to the batcher


def error(status: int, message: str) -> tuple[int, bytes, bytes]:
    return status, dumps({"error": message}), JSON


class ModelHost(Protocol):
    """What an endpoint needs of the app that serves the model."""

    name: str
    max_body_bytes: int

    async def serving_model(self) -> tuple[Model, Batcher]:
        """The model for an inference call (waiting, bounded, for one still loading)."""

    def ready_model(self) -> tuple[Model, Batcher]:
        """The model if it is loaded; 503 otherwise."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The value of request header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it is known to pass `limit` (by its Content-Length,
    before a byte is read, or by the bytes themselves)."""
    too_large = InferenceError(413, f"request body is larger than {limit} bytes")
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise too_large
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InferenceError(499, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
