"""The HTTP/1.1 client that carries calls to replicas, for the control plane's predict and the gateway.

Written here on purpose, on asyncio's protocol layer and httptools' C parser (which uvicorn already
brings), rather than taken from httpx or aiohttp: on this path the client's own cost decides how much of
a 2-core machine is left for the replica. Measured with `python -m benchmarks.clients` (wrk, 32
connections, a bare uvicorn proxy in front of one iris replica that alone answers about 5,400 req/s, on
a 2-core VM): httpx about 250 req/s, aiohttp 2,100 to 3,000, this client 2,800 to 4,400; steadier than
throughput, the proxy spends about 4,000, 300 and 140 µs of CPU per request. It does only what a replica
needs: keep-alive connections per address, a body in, status + body + content type (and the binary
tensor extension's header) out, a timeout, and a clear error when the replica is gone.

Two ways to read an answer, over the same connections: `request` waits for the whole body (predicts),
`open_stream` returns at the answer's head and yields the body as it arrives (an LLM's streamed
completion, passed on token by token by the gateway and the console's chat).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import httptools

from inferbox.runtime.base import ModelNotRunning

T = TypeVar("T")

MAX_IDLE_PER_ADDRESS = 256
# A stream whose reader falls behind: the connection stops reading (and TCP pushes back on the replica)
# once this many chunks wait, and reads again when the reader has caught up to the low mark.
STREAM_HIGH_WATER = 64
STREAM_LOW_WATER = 16


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


class _Stream:
    """The receiving end of one streamed answer: its head once it arrived, then its body's chunks."""

    __slots__ = ("chunks", "complete", "head")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[tuple[int, str]] = loop.create_future()
        # Body chunks, then b"" at the end of the body or the exception that cut it off.
        self.chunks: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self.complete = False

    def fail(self, exc: Exception) -> None:
        if self.complete:
            return
        self.complete = True  # nothing follows an error
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # retrieved: a head nobody awaits any more must not warn
        self.chunks.put_nowait(exc)

    def head_timed_out(self, exc: ReplicaTimeout) -> None:
        # Only a head still awaited: once it came, the body's own idle timeout applies.
        if not self.head.done():
            self.fail(exc)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time, its answer either gathered whole for
    `waiter` or handed to `stream` as it arrives."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address  # (host, port): the pool it goes back to
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.stream: _Stream | None = None
        self.paused = False
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

    def on_headers_complete(self) -> None:
        stream = self.stream
        if stream is not None and not stream.head.done():
            content_type = self._content_type.decode("latin-1")
            stream.head.set_result((self.parser.get_status_code(), content_type))

    def on_body(self, body: bytes) -> None:
        stream = self.stream
        if stream is None:
            self._body.append(body)
        elif body:
            stream.chunks.put_nowait(body)
            if not self.paused and stream.chunks.qsize() >= STREAM_HIGH_WATER:
                self.paused = True
                assert self.transport is not None
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        stream = self.stream
        if stream is not None:
            stream.complete = True
            stream.chunks.put_nowait(b"")
            return
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
    def send(self, request: bytes) -> asyncio.Future[Answer]:
        """Send `request`; the future is the whole answer."""
        self._body = []
        self._content_type = b"application/json"
        self._binary_header = None
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.stream = None
        assert self.transport is not None
        self.transport.write(request)
        return waiter

    def send_streamed(self, request: bytes) -> asyncio.Future[tuple[int, str]]:
        """Send `request`; the future is the answer's head, its body goes to `self.stream`."""
        self._content_type = b"application/json"
        self._binary_header = None
        self.waiter = None
        self.stream = stream = _Stream(asyncio.get_running_loop())
        assert self.transport is not None
        self.transport.write(request)
        return stream.head

    def timed_out(self, exc: ReplicaTimeout) -> None:
        """What `send` or `send_streamed` returned did not come in time."""
        if self.stream is not None:
            self.stream.head_timed_out(exc)
        else:
            self._fail(exc)

    def taken(self) -> None:
        """The stream's reader took a chunk: read from the replica again once it has caught up."""
        stream = self.stream
        if self.paused and stream is not None and stream.chunks.qsize() <= STREAM_LOW_WATER:
            self.paused = False
            if not self.closed and self.transport is not None:
                self.transport.resume_reading()

    def _fail(self, exc: Exception) -> None:
        if self.stream is not None:
            self.stream.fail(exc)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class StreamedAnswer:
    """A replica's answer read as it arrives: `status` and `content_type` at once, the body from
    `chunks()` or `read()`. `close()` (always call it) returns the connection to the pool when the body
    was read to its end, and closes it otherwise: the rest of an abandoned answer is never read."""

    def __init__(self, client: ReplicaClient, connection: _Connection, stream: _Stream) -> None:
        self._client = client
        self._connection = connection
        self._stream = stream
        self.status, self.content_type = stream.head.result()
        self._done = False
        self._closed = False

    async def chunks(self, idle_timeout: float) -> AsyncIterator[bytes]:
        """The body's chunks; ReplicaTimeout when none came for `idle_timeout` seconds,
        ReplicaUnreachable when the replica went away mid-answer."""
        queue = self._stream.chunks
        connection = self._connection
        while not self._done:
            try:
                item = await asyncio.wait_for(queue.get(), idle_timeout)
            except TimeoutError:
                raise ReplicaTimeout("no data from the model in time") from None
            connection.taken()
            if isinstance(item, Exception):
                raise item
            if not item:
                self._done = True
                return
            yield item

    async def read(self, idle_timeout: float) -> bytes:
        """The whole (rest of the) body, with `idle_timeout` between two of its chunks."""
        return b"".join([chunk async for chunk in self.chunks(idle_timeout)])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._done and connection.keep_alive and not connection.closed:
            connection.stream = None
            self._client._release(connection)
        else:
            connection.close()


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
                loop.create_connection(lambda: _Connection((host, port)), host, port), self._connect_timeout
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
        connection, answer = await self._exchange(
            method, base_url, path, body, headers, timeout, _Connection.send
        )
        if connection.keep_alive and not connection.closed:
            self._release(connection)
        else:
            connection.close()
        return answer

    async def _exchange(
        self,
        method: str,
        base_url: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        send: Callable[[_Connection, bytes], asyncio.Future[T]],
    ) -> tuple[_Connection, T]:
        """`send` the request on a pooled connection (a fresh one when none is idle) and await what
        it returns, within `timeout`; the connection it came on, and that."""
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
        loop = asyncio.get_running_loop()
        while True:
            reused = bool(idle)
            connection = idle.pop() if reused else await self._connect(host, port)
            if connection.closed:
                continue
            future = send(connection, request)
            timer = loop.call_later(
                timeout or self._timeout, connection.timed_out, ReplicaTimeout(f"{host}:{port}")
            )
            try:
                return connection, await future
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

    def _release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.address, deque())
        if len(idle) < MAX_IDLE_PER_ADDRESS:
            idle.append(connection)
        else:
            connection.close()

    async def open_stream(
        self,
        method: str,
        base_url: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> StreamedAnswer:
        """Send the call like `request`; return as soon as the answer's head has arrived (within
        `timeout`, the client's by default), its body still to be read from the StreamedAnswer."""
        connection, _ = await self._exchange(
            method, base_url, path, body, headers, timeout, _Connection.send_streamed
        )
        assert connection.stream is not None
        return StreamedAnswer(self, connection, connection.stream)

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
