"""`ReplicaClient`, inferbox's own HTTP/1.1 client for calls to replicas, against a real server on loopback.

The server is a few lines of asyncio `start_server` speaking just enough HTTP/1.1 (Content-Length
bodies, keep-alive), told per connection and per request what to do: answer, answer and close, drop the
connection without answering, or never answer. It records every request it read, with the connection it
came on, so that a test can say how often a request was sent and over which connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from inferbox.runtime.base import ModelNotRunning
from inferbox.runtime.client import (
    REPLICA_ERRORS,
    Failure,
    ReplicaClient,
    ReplicaTimeout,
    ReplicaUnreachable,
    failure,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

# answer: answer and keep the connection; close: answer, then close it while the client holds it idle;
# connection-close: answer with `Connection: close` (and leave the closing to the client); drop: close
# without answering; hang: never answer; stream: a chunked answer whose chunks the test puts on `feed`.
Action = Literal["answer", "close", "connection-close", "drop", "hang", "stream"]
Plan = Callable[[int, int], Action]


@dataclass(frozen=True)
class Received:
    connection: int  # the server's connection number, from 0
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class TinyServer:
    """A minimal HTTP/1.1 server; `plan(connection, request_on_it)` says what to do with a request."""

    plan: Plan = lambda connection, n: "answer"
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    # Set when the client closes a connection whose request was left unanswered ("hang").
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    # The connections the client closed after an answer (end of file where a request could follow).
    client_closed: list[int] = field(default_factory=list)
    # The chunks of a "stream" answer, as the test releases them: None ends the body, b"" cuts the
    # connection off mid-body.
    feed: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent(self, path: str) -> list[int]:
        """The connections a request for `path` arrived on, in order."""
        return [r.connection for r in self.received if r.path == path]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection, self.connections = self.connections, self.connections + 1
        self._writers.append(writer)
        try:
            for n in range(1_000_000):
                request = await self._read(reader, connection)
                if request is None:
                    self.client_closed.append(connection)
                    return
                action = self.plan(connection, n)
                if action == "drop":
                    return
                if action == "hang":
                    await reader.read()  # until the client closes its end
                    self.hung_up.set()
                    return
                if action == "stream":
                    if not await self._stream(writer):
                        return
                    continue
                writer.write(self._answer(request, close=action == "connection-close"))
                await writer.drain()
                if action == "close":
                    return
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> bool:
        """A chunked event stream from `feed`; False when it was cut off."""
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        while (chunk := await self.feed.get()) is not None:
            if not chunk:
                return False
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _read(self, reader: asyncio.StreamReader, connection: int) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection
        request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        method, path, version = request_line.split(" ")
        assert version == "HTTP/1.1"
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        received = Received(connection, method, path, headers, body)
        self.received.append(received)
        return received

    @staticmethod
    def _answer(request: Received, *, close: bool) -> bytes:
        """Echo the request as JSON; `X-Status` and `X-Content-Type` ("none": no header) shape it."""
        body = json.dumps({"method": request.method, "path": request.path, "body": request.body.decode()})
        status = int(request.headers.get("x-status", "200"))
        content_type = request.headers.get("x-content-type", "application/json")
        head = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}"]
        if content_type != "none":
            head.append(f"Content-Type: {content_type}")
        if close:
            head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    tiny = TinyServer()
    await tiny.start()
    yield tiny
    await tiny.close()


@pytest.fixture
async def client() -> AsyncIterator[ReplicaClient]:
    replica_client = ReplicaClient(timeout=5.0, connect_timeout=2.0)
    yield replica_client
    await replica_client.close()


def plan(table: dict[tuple[int, int], Action]) -> Plan:
    """A plan from a table of (connection, request on it) -> action; "answer" for everything else."""
    return lambda connection, n: table.get((connection, n), "answer")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def echoed(body: bytes) -> dict[str, Any]:
    return json.loads(body)


# -- requests and keep-alive -------------------------------------------------------------------------


async def test_get_then_post_reuse_one_keep_alive_connection(
    server: TinyServer, client: ReplicaClient
) -> None:
    got = await client.request("GET", server.base_url, "/v2/health/ready")
    assert (got.status, got.content_type) == (200, "application/json")
    assert echoed(got.body) == {"method": "GET", "path": "/v2/health/ready", "body": ""}

    payload = b'{"instances": [[1, 2, 3, 4]]}'
    posted = await client.request(
        "POST", server.base_url, "/v1/models/iris:predict", payload, headers={"X-Request-Id": "abc"}
    )
    assert posted.status == 200
    assert echoed(posted.body) == {
        "method": "POST",
        "path": "/v1/models/iris:predict",
        "body": payload.decode(),
    }

    assert server.connections == 1
    first, second = server.received
    assert (first.connection, second.connection) == (0, 0)
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-length"] == "0" and first.body == b""
    assert second.headers["content-length"] == str(len(payload)) and second.body == payload
    assert second.headers["x-request-id"] == "abc"


async def test_the_answer_is_returned_whatever_its_status_and_content_type(
    server: TinyServer, client: ReplicaClient
) -> None:
    got = await client.request(
        "POST", server.base_url, "/x", b"{}", headers={"X-Status": "422", "X-Content-Type": "text/plain"}
    )
    assert (got.status, got.content_type) == (422, "text/plain")
    # Without a Content-Type the answer is taken for JSON, the model server's only kind.
    got = await client.request("GET", server.base_url, "/y", headers={"X-Content-Type": "none"})
    assert (got.status, got.content_type) == (200, "application/json")
    assert server.connections == 1  # an error status does not cost the connection


async def test_connection_close_from_the_server_is_not_reused(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 0): "connection-close"})
    await client.request("GET", server.base_url, "/first")
    await client.request("GET", server.base_url, "/second")
    assert (server.sent("/first"), server.sent("/second")) == ([0], [1])
    await asyncio.sleep(0.1)
    assert server.client_closed == [0]  # the client closed it, as the answer asked


async def test_an_idle_connection_the_server_closed_is_passed_over(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 0): "close"})
    await client.request("GET", server.base_url, "/first")
    await asyncio.sleep(0.2)  # the client sees the FIN of its idle connection
    got = await client.request("POST", server.base_url, "/second", b"once")
    assert got.status == 200
    assert server.sent("/second") == [1]


async def test_a_replica_url_must_be_plain_http(client: ReplicaClient) -> None:
    with pytest.raises(ValueError, match="plain http"):
        await client.request("GET", "https://127.0.0.1:1", "/")


# -- the retry of a reused connection ----------------------------------------------------------------


async def test_a_post_on_a_reused_connection_closed_by_the_server_is_sent_again_once(
    server: TinyServer, client: ReplicaClient
) -> None:
    # The server closes the idle connection just as the client reuses it: it has read the request
    # and goes away without answering (a keep-alive timeout racing the request).
    server.plan = plan({(0, 1): "drop"})
    await client.request("GET", server.base_url, "/warm")
    got = await client.request("POST", server.base_url, "/predict", b'{"instances": []}')
    assert got.status == 200
    assert echoed(got.body)["body"] == '{"instances": []}'
    assert server.sent("/predict") == [0, 1]  # once on the reused connection, once more on a fresh one
    assert server.connections == 2


async def test_the_resent_request_is_not_sent_a_third_time(server: TinyServer, client: ReplicaClient) -> None:
    server.plan = plan({(0, 1): "drop", (1, 0): "drop"})
    await client.request("GET", server.base_url, "/warm")
    with pytest.raises(ReplicaUnreachable, match="closed by the replica"):
        await client.request("POST", server.base_url, "/predict", b"{}")
    await asyncio.sleep(0.1)
    assert server.sent("/predict") == [0, 1]


async def test_a_post_on_a_fresh_connection_that_fails_is_not_retried(
    server: TinyServer, client: ReplicaClient
) -> None:
    # Were it sent again, the second connection would answer and the call would succeed.
    server.plan = plan({(0, 0): "drop"})
    with pytest.raises(ReplicaUnreachable, match="closed by the replica"):
        await client.request("POST", server.base_url, "/predict", b"{}")
    await asyncio.sleep(0.1)
    assert server.sent("/predict") == [0]
    assert server.connections == 1


async def test_a_timeout_on_a_reused_connection_is_not_retried(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 1): "hang"})
    await client.request("GET", server.base_url, "/warm")
    with pytest.raises(ReplicaTimeout):
        await client.request("POST", server.base_url, "/slow", b"{}", timeout=0.2)
    await asyncio.sleep(0.1)
    assert server.sent("/slow") == [0]


# -- timeouts and refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("per_call", [True, False], ids=["per-call timeout", "client timeout"])
async def test_no_answer_in_time_is_a_timeout_and_costs_the_connection(
    server: TinyServer, per_call: bool
) -> None:
    server.plan = plan({(0, 0): "hang"})
    client = ReplicaClient(timeout=5.0 if per_call else 0.3)
    try:
        began = time.monotonic()
        with pytest.raises(ReplicaTimeout) as info:
            await client.request("POST", server.base_url, "/slow", b"{}", timeout=0.3 if per_call else None)
        assert 0.25 <= time.monotonic() - began < 2.0
        assert str(info.value) == f"127.0.0.1:{server.port}"
        assert failure(info.value) == Failure(504, "Model timed out", "No answer from the model in time")
        # The connection is left mid-answer: the client closes it, and the next call takes a new one.
        await asyncio.wait_for(server.hung_up.wait(), 2)
        assert (await client.request("GET", server.base_url, "/next")).status == 200
        assert server.sent("/next") == [1]
    finally:
        await client.close()


async def test_a_connect_that_does_not_complete_in_time_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def never(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(loop, "create_connection", never)
    client = ReplicaClient(connect_timeout=0.2)
    began = time.monotonic()
    with pytest.raises(ReplicaTimeout, match=r"^127\.0\.0\.1:9: connect timed out$"):
        await client.request("GET", "http://127.0.0.1:9", "/")
    assert time.monotonic() - began < 2.0
    await client.close()


async def test_a_refused_connection_is_unreachable(client: ReplicaClient) -> None:
    port = free_port()
    began = time.monotonic()
    with pytest.raises(ReplicaUnreachable) as info:
        await client.request("POST", f"http://127.0.0.1:{port}", "/v1/models/iris:predict", b"{}")
    assert time.monotonic() - began < 1.0
    # The address, then what the OS said (asyncio words it "Connect call failed ('127.0.0.1', port)").
    message = str(info.value)
    assert message.startswith(f"127.0.0.1:{port}: ") and str(port) in message.split(": ", 1)[1]
    assert isinstance(info.value.__context__, ConnectionRefusedError)
    assert failure(info.value) == Failure(
        503, "Model not ready", f"Replica unavailable: {message}", {"Retry-After": "1"}
    )


# -- call(): a second pick for a replica that died after it was picked --------------------------------


def picker(urls: list[str]) -> tuple[Callable[[], AbstractAsyncContextManager[str]], list[str]]:
    """A `connect` that yields `urls` in turn (the last one from then on), and the list of its picks."""
    picks: list[str] = []

    @asynccontextmanager
    async def connect() -> AsyncIterator[str]:
        url = urls[min(len(picks), len(urls) - 1)]
        picks.append(url)
        yield url

    return connect, picks


async def test_call_replaces_a_refused_replica_with_a_second_pick(
    server: TinyServer, client: ReplicaClient
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    connect, picks = picker([dead, server.base_url])
    got = await client.call(connect, "POST", "/v1/models/iris:predict", b"{}")
    assert got.status == 200 and picks == [dead, server.base_url]
    assert server.sent("/v1/models/iris:predict") == [0]


async def test_call_picks_twice_at_most(client: ReplicaClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    connect, picks = picker([dead])
    with pytest.raises(ReplicaUnreachable):
        await client.call(connect, "POST", "/v1/models/iris:predict", b"{}")
    assert picks == [dead, dead]


async def test_call_does_not_pick_again_after_a_timeout(server: TinyServer) -> None:
    server.plan = plan({(0, 0): "hang"})
    client = ReplicaClient(timeout=0.2)
    connect, picks = picker([server.base_url])
    with pytest.raises(ReplicaTimeout):
        await client.call(connect, "POST", "/slow", b"{}")
    assert picks == [server.base_url]
    await client.close()


# -- failure(): how each error answers the caller ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ModelNotRunning("model ns/m failed to load: bad pickle", retry_after=30),
            Failure(503, "Model not ready", "model ns/m failed to load: bad pickle", {"Retry-After": "30"}),
        ),
        (
            ModelNotRunning("no replica of model ns/m became ready within 5s"),
            Failure(
                503,
                "Model not ready",
                "no replica of model ns/m became ready within 5s",
                {"Retry-After": "5"},
            ),
        ),
        (
            ReplicaTimeout("127.0.0.1:1234"),
            Failure(504, "Model timed out", "No answer from the model in time", {}),
        ),
        (
            ReplicaUnreachable("connection closed by the replica"),
            Failure(
                503,
                "Model not ready",
                "Replica unavailable: connection closed by the replica",
                {"Retry-After": "1"},
            ),
        ),
    ],
    ids=["not running", "not running, default retry", "timeout", "unreachable"],
)
def test_failure_maps_each_replica_error(error: Exception, expected: Failure) -> None:
    assert isinstance(error, REPLICA_ERRORS)
    assert failure(error) == expected


# -- open_stream(): an answer read as it arrives -------------------------------------------------------


async def next_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(chunks), 5)


async def test_a_streamed_answer_yields_each_chunk_before_the_body_ends(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = lambda connection, n: "stream"
    answer = await client.open_stream("POST", server.base_url, "/chat", b"{}", {"X-Request-Id": "r1"})
    try:
        assert (answer.status, answer.content_type) == (200, "text/event-stream")
        chunks = answer.chunks(idle_timeout=5)
        # The server holds the rest of the body back until each chunk has come through.
        server.feed.put_nowait(b"data: one\n\n")
        assert await next_chunk(chunks) == b"data: one\n\n"
        server.feed.put_nowait(b"data: two\n\n")
        assert await next_chunk(chunks) == b"data: two\n\n"
        server.feed.put_nowait(None)
        assert [chunk async for chunk in chunks] == []
    finally:
        answer.close()
    (received,) = server.received
    assert received.body == b"{}" and received.headers["x-request-id"] == "r1"


async def test_a_stream_read_to_its_end_gives_its_connection_back(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 0): "stream", (0, 1): "stream"})
    for _ in range(2):
        answer = await client.open_stream("POST", server.base_url, "/chat", b"{}")
        for item in (b"a", b"b", None):
            server.feed.put_nowait(item)
        assert await answer.read(idle_timeout=5) == b"ab"
        answer.close()
    # The same pool serves whole answers: the third call, a plain request, takes the connection too.
    got = await client.request("GET", server.base_url, "/whole")
    assert got.status == 200
    assert server.sent("/chat") == [0, 0] and server.sent("/whole") == [0]
    assert server.connections == 1


async def test_a_whole_answer_can_be_read_as_a_stream(server: TinyServer, client: ReplicaClient) -> None:
    answer = await client.open_stream(
        "POST", server.base_url, "/x", b"hi", {"X-Status": "400", "X-Content-Type": "text/plain"}
    )
    assert (answer.status, answer.content_type) == (400, "text/plain")
    assert echoed(await answer.read(idle_timeout=5)) == {"method": "POST", "path": "/x", "body": "hi"}
    answer.close()
    await client.request("GET", server.base_url, "/next")
    assert server.sent("/next") == [0]


async def test_an_abandoned_stream_costs_its_connection(server: TinyServer, client: ReplicaClient) -> None:
    server.plan = plan({(0, 0): "stream"})
    answer = await client.open_stream("POST", server.base_url, "/chat", b"{}")
    server.feed.put_nowait(b"data: one\n\n")
    assert await next_chunk(answer.chunks(idle_timeout=5)) == b"data: one\n\n"
    answer.close()  # the caller went away with the body half read
    # Its rest would arrive ahead of the next answer: the next call takes a fresh connection.
    server.feed.put_nowait(b"data: two\n\n")
    got = await client.request("GET", server.base_url, "/next")
    assert echoed(got.body)["path"] == "/next"
    assert server.sent("/next") == [1]


async def test_a_reader_that_falls_behind_still_gets_every_chunk_in_order(
    server: TinyServer, client: ReplicaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Low marks, so that the connection stops reading from the replica and starts again many times.
    monkeypatch.setattr("inferbox.runtime.client.STREAM_HIGH_WATER", 4)
    monkeypatch.setattr("inferbox.runtime.client.STREAM_LOW_WATER", 1)
    server.plan = plan({(0, 0): "stream"})
    answer = await client.open_stream("POST", server.base_url, "/chat", b"{}")
    sent = [b"%d;" % i for i in range(500)]
    for chunk in sent:
        server.feed.put_nowait(chunk)
    server.feed.put_nowait(None)
    await asyncio.sleep(0.2)  # the whole stream is on its way before the reader begins
    assert await answer.read(idle_timeout=5) == b"".join(sent)
    answer.close()
    await client.request("GET", server.base_url, "/next")
    assert server.sent("/next") == [0]


async def test_no_head_in_time_is_a_timeout_and_costs_the_connection(server: TinyServer) -> None:
    server.plan = plan({(0, 0): "hang"})
    client = ReplicaClient(timeout=0.3)
    try:
        began = time.monotonic()
        with pytest.raises(ReplicaTimeout, match=rf"^127\.0\.0\.1:{server.port}$"):
            await client.open_stream("POST", server.base_url, "/chat", b"{}")
        assert 0.25 <= time.monotonic() - began < 2.0
        await asyncio.wait_for(server.hung_up.wait(), 2)
        assert (await client.request("GET", server.base_url, "/next")).status == 200
        assert server.sent("/next") == [1]
    finally:
        await client.close()


async def test_silence_in_the_middle_of_a_stream_is_a_timeout(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 0): "stream"})
    answer = await client.open_stream("POST", server.base_url, "/chat", b"{}")
    server.feed.put_nowait(b"data: one\n\n")
    received = []
    with pytest.raises(ReplicaTimeout, match="no data from the model in time"):
        async for chunk in answer.chunks(idle_timeout=0.3):
            received.append(chunk)
    assert received == [b"data: one\n\n"]
    answer.close()
    await client.request("GET", server.base_url, "/next")
    assert server.sent("/next") == [1]


async def test_a_stream_cut_off_by_the_replica_is_unreachable(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 0): "stream"})
    answer = await client.open_stream("POST", server.base_url, "/chat", b"{}")
    server.feed.put_nowait(b"data: one\n\n")
    server.feed.put_nowait(b"")
    chunks = answer.chunks(idle_timeout=5)
    assert await next_chunk(chunks) == b"data: one\n\n"
    with pytest.raises(ReplicaUnreachable, match="closed by the replica"):
        await next_chunk(chunks)
    answer.close()


async def test_a_stream_to_a_refused_replica_is_unreachable(client: ReplicaClient) -> None:
    port = free_port()
    with pytest.raises(ReplicaUnreachable, match=rf"^127\.0\.0\.1:{port}: "):
        await client.open_stream("POST", f"http://127.0.0.1:{port}", "/chat", b"{}")


async def test_a_stream_on_a_reused_connection_closed_by_the_server_is_sent_again_once(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 1): "drop", (1, 0): "stream"})
    await client.request("GET", server.base_url, "/warm")
    answer = await client.open_stream("POST", server.base_url, "/chat", b"{}")
    server.feed.put_nowait(None)
    assert (answer.status, await answer.read(idle_timeout=5)) == (200, b"")
    answer.close()
    assert server.sent("/chat") == [0, 1]


async def test_a_stream_on_a_fresh_connection_that_fails_is_not_sent_again(
    server: TinyServer, client: ReplicaClient
) -> None:
    server.plan = plan({(0, 0): "drop"})
    with pytest.raises(ReplicaUnreachable, match="closed by the replica"):
        await client.open_stream("POST", server.base_url, "/chat", b"{}")
    await asyncio.sleep(0.1)
    assert server.sent("/chat") == [0]
