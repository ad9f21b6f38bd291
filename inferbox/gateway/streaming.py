"""An HTTP/1.1 call to a replica whose answer is read as it arrives: the gateway passes a streamed
completion on chunk by chunk instead of waiting for its end.

Built like runtime/client.py (asyncio's protocol layer and httptools' parser, keep-alive connections per
address) for the same reason: this sits on the path of every token, and a general client costs more CPU
per call than the replica's own work on a small model. runtime/client.py answers whole bodies; this one
yields the status and content type first, then the body's chunks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import httptools

from inferbox.runtime.client import ReplicaTimeout, ReplicaUnreachable

MAX_IDLE_PER_ADDRESS = 64
_END = b""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one call at a time, its body chunks queued as they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.complete = False
        self.keep_alive = True
        self.head: asyncio.Future[tuple[int, str]] | None = None
        self.chunks: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self._content_type = b"application/json"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self.fail(ReplicaUnreachable("connection closed by the replica"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ReplicaUnreachable(f"malformed answer: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_headers_complete(self) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_result((self.parser.get_status_code(), self._content_type.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        if body:
            self.chunks.put_nowait(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self.chunks.put_nowait(_END)

    def start(self, request: bytes) -> asyncio.Future[tuple[int, str]]:
        self.complete = False
        self._content_type = b"application/json"
        self.chunks = asyncio.Queue()
        self.head = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self.head

    def fail(self, exc: Exception) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        self.chunks.put_nowait(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class StreamedAnswer:
    """A replica's answer: `status` and `content_type` at once, the body from `chunks()`. `close()`
    returns the connection to the pool when the body was read to its end, else drops it."""

    def __init__(self, client: StreamingClient, key: tuple[str, int], connection: _Connection) -> None:
        self._client = client
        self._key = key
        self._connection = connection
        self.status = 0
        self.content_type = ""
        self._done = False

    async def chunks(self, idle_timeout: float) -> AsyncIterator[bytes]:
        """The body's chunks; ReplicaTimeout when none came for `idle_timeout` seconds,
        ReplicaUnreachable when the replica went away mid-answer."""
        queue = self._connection.chunks
        while not self._done:
            try:
                item = await asyncio.wait_for(queue.get(), idle_timeout)
            except TimeoutError:
                raise ReplicaTimeout("no data from the model in time") from None
            if isinstance(item, Exception):
                raise item
            if item == _END:
                self._done = True
                return
            yield item

    async def read(self, idle_timeout: float) -> bytes:
        return b"".join([chunk async for chunk in self.chunks(idle_timeout)])

    def close(self) -> None:
        connection = self._connection
        if self._done and connection.keep_alive and not connection.closed:
            self._client._release(self._key, connection)
        else:
            connection.close()


class StreamingClient:
    def __init__(self, connect_timeout: float = 5.0) -> None:
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}

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

    def _release(self, key: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) < MAX_IDLE_PER_ADDRESS:
            idle.append(connection)
        else:
            connection.close()

    async def open(
        self,
        method: str,
        base_url: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> StreamedAnswer:
        """Send the call; return once the answer's head has arrived (within `timeout`)."""
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"replica URLs are plain http: {base_url}")
        host, port = parts.hostname, parts.port or 80
        extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        request = b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n%s\r\n%s" % (
            method.encode(),
            path.encode(),
            host.encode(),
            port,
            len(body),
            extra,
            body,
        )
        key = (host, port)
        idle = self._idle.setdefault(key, deque())
        while True:
            reused = bool(idle)
            connection = idle.pop() if reused else await self._connect(host, port)
            if connection.closed:
                continue
            head = connection.start(request)
            try:
                status, content_type = await asyncio.wait_for(head, timeout)
            except TimeoutError:
                connection.close()
                raise ReplicaTimeout(f"{host}:{port}") from None
            except ReplicaUnreachable:
                connection.close()
                if reused:
                    continue  # an idle connection the replica closed as we reused it: once more, fresh
                raise
            except BaseException:
                connection.close()
                raise
            answer = StreamedAnswer(self, key, connection)
            answer.status, answer.content_type = status, content_type
            return answer

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
