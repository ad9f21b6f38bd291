"""The HTTP/1.1 client that carries calls to replicas, for the control plane's predict and the gateway.

Written here on purpose, on asyncio's protocol layer and httptools' C parser (which uvicorn already
brings), rather than taken from httpx or aiohttp: on this path the client's own cost decides how much of
a 2-core machine is left for the replica. Measured with `python -m benchmarks.clients` (wrk, 32
connections, a bare uvicorn proxy in front of one iris replica that alone answers about 5,400 req/s, on
a 2-core VM): httpx about 250 req/s, aiohttp 2,100 to 3,000, this client 2,800 to 4,400; steadier than
throughput, the proxy spends about 4,000, 300 and 140 µs of CPU per request. It does only what a replica
needs: keep-alive connections per address, a body in, status + body + content type (and the binary
tensor extension's header) out, a timeout, and a clear error when the replica is gone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from inferbox.runtime.base import ModelNotRunning

MAX_IDLE_PER_ADDRESS = 256


class ReplicaUnreachable(Exception):
    """The call could not be delivered or its answer was cut off (the replica died or went away)."""


class ReplicaTimeout(Exception):
    """No answer in time."""


@dataclass(frozen=True)
class Failure:
    """How a failed replica call reads to whoever called inferbox: status, error, details, headers."""

    status: int
    error: str
    details: str
    headers: dict[str, str] = field(default_factory=dict)


# What `ReplicaClient.call` raises; `failure()` says how each one answers.
REPLICA_ERRORS = (ModelNotRunning, ReplicaTimeout, ReplicaUnreachable)


def failure(exc: Exception) -> Failure:
    if isinstance(exc, ModelNotRunning):
        return Failure(503, "Model not ready", str(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, ReplicaTimeout):
        return Failure(504, "Model timed out", "No answer from the model in time")
    return Failure(503, "Model not ready", f"Replica unavailable: {exc}", {"Retry-After": "1"})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    # The binary tensor extension's Inference-Header-Content-Length, when the replica sent one: the
    # body is then JSON for that many bytes and raw tensors after it.
    binary_header: str | None = None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.keep_alive = True
        self._body: list[bytes] = []
        self._content_type = b"application/json"
        self._binary_header: bytes | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ReplicaUnreachable("connection closed by the replica"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ReplicaUnreachable(f"malformed answer: {exc}"))
            self.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-type":
            self._content_type = value
        elif lowered == b"inference-header-content-length":
            self._binary_header = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            status = self.parser.get_status_code()
            binary = self._binary_header
            waiter.set_result(
                Answer(
                    status,
                    b"".join(self._body),
                    self._content_type.decode("latin-1"),
                    None if binary is None else binary.decode("latin-1"),
                )
            )

    # ours
    def send(self, request: bytes, waiter: asyncio.Future[Answer]) -> None:
        self._body = []
        self._content_type = b"application/json"
        self._binary_header = None
        self.waiter = waiter
        assert self.transport is not None
        self.transport.write(request)

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ReplicaClient:
    def __init__(self, timeout: float = 60.0, connect_timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._addresses: dict[str, tuple[str, int, bytes]] = {}

    def _address(self, base_url: str) -> tuple[str, int, bytes]:
        found = self._addresses.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"replica URLs are plain http: {base_url}")
            port = parts.port or 80
            found = (parts.hostname, port, f"{parts.hostname}:{port}".encode())
            if len(self._addresses) < 10_000:
                self._addresses[base_url] = found
        return found

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, host, port), self._connect_timeout
            )
        except TimeoutError:
            raise ReplicaTimeout(f"{host}:{port}: connect timed out") from None
        except OSError as exc:
            raise ReplicaUnreachable(f"{host}:{port}: {exc.strerror or exc}") from None
        return connection

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """`method` `base_url` + `path` with `body`; the replica's answer, whatever its status."""
        host, port, host_header = self._address(base_url)
        extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in (headers or {}).items())
        request = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
            method.encode(),
            path.encode(),
            host_header,
            len(body),
            extra,
            body,
        )
        idle = self._idle.setdefault((host, port), deque())
        while True:
            reused = bool(idle)
            connection = idle.pop() if reused else await self._connect(host, port)
            if connection.closed:
                continue
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[Answer] = loop.create_future()
            connection.send(request, waiter)
            timer = loop.call_later(
                timeout or self._timeout, connection._fail, ReplicaTimeout(f"{host}:{port}")
            )
            try:
                answer = await waiter
            except ReplicaUnreachable:
                connection.close()
                if reused:
                    continue  # the replica closed an idle connection as we reused it: once more, fresh
                raise
            except BaseException:
                connection.close()  # a timeout or a cancelled caller leaves the connection mid-answer
                raise
            finally:
                timer.cancel()
            if connection.keep_alive and not connection.closed and len(idle) < MAX_IDLE_PER_ADDRESS:
                idle.append(connection)
            else:
                connection.close()
            return answer

    async def call(
        self,
        connect: Callable[[], AbstractAsyncContextManager[str]],
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One call to the replica `connect` picks. A replica that died after it was picked (refused
        or cut off) is replaced by a second pick, once. Raises one of REPLICA_ERRORS."""
        for attempt in (1, 2):
            try:
                async with connect() as base_url:
                    return await self.request(method, base_url, path, body, headers)
            except ReplicaUnreachable:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
