"""`/ws`: authentication, tenancy, subscriptions and slow consumers, over real sockets on loopback
(the `websockets` client against the running server) with real replicas."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import RunningServer, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from inferbox.api.ws import SLOW_CONSUMER, EventPump
from inferbox.control.events import EVENT_TYPES, MODEL_CREATED, MODEL_STATUS_CHANGED, EventBus
from inferbox.logs import scrub_data

Message = dict[str, Any]


@pytest.fixture
def srv(make_server) -> RunningServer:
    # A short wait for the first message, so that the unauthenticated cases take a second, not five.
    return make_server(ws_auth_timeout_seconds=1.0)


@pytest.fixture(scope="module")
def shared(module_servers) -> RunningServer:
    """One control plane for the tests that only connect (no models)."""
    return module_servers(ws_auth_timeout_seconds=1.0)


def ws_url(srv: RunningServer, token: str | None = None) -> str:
    url = srv.base_url.replace("http://", "ws://") + "/ws"
    return f"{url}?token={token}" if token else url


def open_socket(srv: RunningServer, token: str | None = None, **kwargs: Any) -> ClientConnection:
    return connect(ws_url(srv, token), open_timeout=10, close_timeout=2, **kwargs)


def receive(ws: ClientConnection, timeout: float = 10) -> Message:
    """The next message that is not a keep-alive ping."""
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if message.get("type") != "ping":
            return message


def receive_until(
    ws: ClientConnection, done: Callable[[Message], bool], timeout: float = 30
) -> list[Message]:
    """Messages up to and including the first for which `done` holds."""
    out: list[Message] = []
    while True:
        out.append(receive(ws, timeout))
        if done(out[-1]):
            return out


def closed_with(ws: ClientConnection, timeout: float = 10) -> tuple[int | None, list[str]]:
    """Read until the server closes the socket: (close code, what was heard before)."""
    heard: list[str] = []
    try:
        while True:
            heard.append(str(ws.recv(timeout=timeout)))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), heard


def welcome(ws: ClientConnection) -> Message:
    message = receive(ws)
    assert message["type"] == "welcome", message
    return message


def create_model(srv: RunningServer, token: str, name: str, model_dir: Path) -> None:
    with srv.client(token) as c:
        r = c.post("/api/models", json={"name": name, "framework": "sklearn", "storageUri": str(model_dir)})
        assert r.status_code == 201, r.text


def delete_model(srv: RunningServer, token: str, name: str) -> None:
    with srv.client(token) as c:
        assert c.delete(f"/api/models/{name}").status_code == 200


def test_a_tenant_hears_only_its_own_events_in_order(srv: RunningServer, sklearn_dir: Path) -> None:
    token_a, token_b = srv.tenant_token("tenant-a"), srv.tenant_token("tenant-b")
    with (
        open_socket(srv, token_a) as sock_a,
        open_socket(srv, token_b) as sock_b,
        open_socket(srv) as anonymous,
    ):
        hello = welcome(sock_a)
        assert hello.pop("timestamp").endswith("Z")
        assert hello == {
            "type": "welcome",
            "tenant": "tenant-a",
            "isAdmin": False,
            "user": "tenant-a-user",
            "namespaces": ["tenant-a"],
            "types": sorted(EVENT_TYPES),
        }
        assert welcome(sock_b)["tenant"] == "tenant-b"

        create_model(srv, token_a, "iris", sklearn_dir)
        heard_a = receive_until(
            sock_a, lambda m: m["type"] == MODEL_STATUS_CHANGED and m["data"]["phase"] == "Ready"
        )
        for message in heard_a:
            assert set(message) == {"type", "namespace", "name", "data", "timestamp"}
            assert (message["namespace"], message["name"]) == ("tenant-a", "iris")
        types = [m["type"] for m in heard_a]
        assert types[0] == MODEL_CREATED
        assert set(types[1:]) == {MODEL_STATUS_CHANGED}
        assert heard_a[0]["data"]["config"]["framework"] == "sklearn"
        # After `model.created` the status moves forward to Ready, each change reported once, with the
        # replica counts.
        after = [m["data"] for m in heard_a[1:]]
        assert after and after[-1]["phase"] == "Ready"
        assert after[-1]["replicas"] == {"desired": 1, "ready": 1, "total": 1, "pending": 0}
        order = {"Pending": 0, "Loading": 1, "Ready": 2}
        statuses = [m["data"] for m in heard_a if m["type"] == MODEL_STATUS_CHANGED]
        phases = [order[d["phase"]] for d in statuses]
        assert phases == sorted(phases)
        assert all(a != b for a, b in itertools.pairwise(statuses))

        # tenant-b hears its own marker model next, and nothing of tenant-a's before it.
        create_model(srv, token_b, "marker", sklearn_dir)
        heard_b = receive_until(sock_b, lambda m: m["type"] == MODEL_CREATED)
        assert [(m["namespace"], m["name"]) for m in heard_b] == [("tenant-b", "marker")] * len(heard_b)
        assert heard_b[-1]["name"] == "marker"

        # No token: closed with 4401 after the wait for a first message, having heard nothing.
        code, heard = closed_with(anonymous)
        assert code == 4401
        assert heard == []


def test_token_in_the_first_message_or_a_header(shared: RunningServer) -> None:
    srv = shared
    token = srv.tenant_token("tenant-a")
    with open_socket(srv) as ws:
        ws.send(json.dumps({"token": token}))
        assert welcome(ws)["tenant"] == "tenant-a"
    with open_socket(srv, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert welcome(ws)["tenant"] == "tenant-a"
    with open_socket(srv, srv.admin_token()) as ws:
        hello = welcome(ws)
        assert hello["isAdmin"] is True and hello["tenant"] == "admin" and hello["namespaces"] is None


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("query", "Malformed token"),
        ("header", "Malformed token"),
        ("message", "Malformed token"),
        ("basic", "Authorization header must be 'Bearer <token>'"),
        ("not-json", "Authentication required"),
        ("unknown-tenant", "Unknown tenant"),
    ],
)
def test_refused_tokens_close_with_4401_and_are_audited(shared: RunningServer, how: str, reason: str) -> None:
    srv = shared
    kwargs: dict[str, Any] = {}
    token = None
    if how == "query":
        token = "garbage"
    elif how == "header":
        kwargs["additional_headers"] = {"Authorization": "Bearer garbage"}
    elif how == "basic":
        kwargs["additional_headers"] = {"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="}
    elif how == "unknown-tenant":
        token = srv.platform.tokens.issue_tenant("nobody")
    with open_socket(srv, token, **kwargs) as ws:
        if how == "message":
            ws.send(json.dumps({"token": "garbage"}))
        elif how == "not-json":
            ws.send("hello")
        code, heard = closed_with(ws)
        assert code == 4401 and heard == []
        assert (ws.close_reason or "").startswith(reason)
    if how != "not-json":
        with srv.admin() as admin:
            refused = admin.get("/api/admin/audit", params={"action": "auth.tokenRefused"}).json()["entries"]
        assert refused[0]["target"] == "/ws" and refused[0]["outcome"] == "denied"


def test_subscriptions_narrow_what_a_socket_hears(srv: RunningServer, sklearn_dir: Path) -> None:
    token_a, token_b = srv.tenant_token("tenant-a"), srv.tenant_token("tenant-b")
    with open_socket(srv, srv.admin_token()) as admin, open_socket(srv, token_a) as tenant:
        welcome(admin)
        welcome(tenant)
        admin.send(
            json.dumps(
                {"subscribe": {"namespaces": ["tenant-b"], "types": ["model.created", "model.deleted"]}}
            )
        )
        subscribed = receive(admin)
        assert subscribed.pop("timestamp").endswith("Z")
        assert subscribed == {
            "type": "subscribed",
            "namespaces": ["tenant-b"],
            "types": ["model.created", "model.deleted"],
        }
        # A tenant may narrow the types, never widen the namespaces.
        tenant.send(json.dumps({"subscribe": {"namespaces": ["tenant-a", "tenant-b"]}}))
        refused = receive(tenant)
        assert refused["type"] == "error" and refused["error"] == "Subscription refused"
        tenant.send(json.dumps({"subscribe": {"types": ["model.*"]}}))
        assert receive(tenant)["namespaces"] == ["tenant-a"]
        tenant.send(json.dumps({"subscribe": {"types": ["model.deleted"]}}))
        assert receive(tenant)["types"] == ["model.deleted"]

        # tenant-a's model first, then tenant-b's: the socket is ordered, so anything of tenant-a's the
        # admin heard would arrive before tenant-b's events.
        create_model(srv, token_a, "first", sklearn_dir)
        delete_model(srv, token_a, "first")
        create_model(srv, token_b, "second", sklearn_dir)
        delete_model(srv, token_b, "second")
        heard = receive_until(admin, lambda m: m["type"] == "model.deleted")
        assert [(m["type"], m["namespace"], m["name"]) for m in heard] == [
            ("model.created", "tenant-b", "second"),
            ("model.deleted", "tenant-b", "second"),
        ]
        assert [(m["type"], m["name"]) for m in receive_until(tenant, lambda m: True)] == [
            ("model.deleted", "first")
        ]


def test_pings_and_pongs(make_server) -> None:
    srv = make_server(ws_ping_seconds=0.2)
    with open_socket(srv, srv.tenant_token("tenant-a")) as ws:
        welcome(ws)
        assert json.loads(ws.recv(timeout=5))["type"] == "ping"
        ws.send(json.dumps({"type": "ping"}))
        assert receive_until(ws, lambda m: m["type"] == "pong")[-1]["type"] == "pong"
        ws.send(json.dumps({"type": "shout"}))
        assert receive(ws)["error"] == "Invalid message"


def test_an_expired_token_closes_the_socket(srv: RunningServer) -> None:
    token = srv.platform.tokens.issue_tenant(srv.platform.tenants.create("tenant-a").name, ttl=1)
    with open_socket(srv, token) as ws:
        welcome(ws)
        code, _ = closed_with(ws)
        assert code == 4401 and ws.close_reason == "Token expired"


def test_publication_events_carry_no_key_material(srv: RunningServer, sklearn_dir: Path) -> None:
    token = srv.tenant_token("tenant-a")
    with open_socket(srv, token) as ws, srv.client(token) as c:
        welcome(ws)
        create_model(srv, token, "iris", sklearn_dir)
        published = c.post("/api/models/iris/publish", json={"config": {"tenantId": "tenant-a"}})
        assert published.status_code == 201, published.text
        rotated = c.post("/api/models/iris/publish/rotate-key")
        assert rotated.status_code == 200, rotated.text
        keys = [published.json()["publishedModel"]["apiKey"], rotated.json()["newApiKey"]]
        heard = receive_until(ws, lambda m: m["type"] == "publication.keyRotated")
    assert "publication.published" in [m["type"] for m in heard]
    for key in keys:
        assert key not in json.dumps(heard)


def test_event_data_is_scrubbed_of_credentials() -> None:
    data = {
        "apiKey": "pk_live_abcdef",
        "newApiKey": "pk_live_ghijkl",
        "nested": [{"api_key": "x", "token": "y", "clientSecret": "z", "note": "key pk_test_123456 leaked"}],
        "tokensPerHour": 1000,
        "maskedKey": "pk_live_****abcd",
    }
    assert scrub_data(data) == {
        "nested": [{"note": "key pk_test_*** leaked"}],
        "tokensPerHour": 1000,
        "maskedKey": "pk_live_****abcd",  # already masked: nothing to take
    }


def test_a_slow_consumer_is_dropped_without_slowing_the_others() -> None:
    """At the handler level: a socket whose sends never complete, a bus with a tiny queue for it."""

    async def scenario() -> None:
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())
        stuck = asyncio.Event()  # never set: the slow client's socket does not take data

        async def slow_send(_message: Message) -> None:
            await stuck.wait()

        fast_heard: list[Message] = []

        async def fast_send(message: Message) -> None:
            fast_heard.append(message)

        slow = EventPump(
            bus.subscribe(maxsize=2), slow_send, lambda e: True, send_timeout=60, drop_check=0.01
        )
        fast = EventPump(bus.subscribe(maxsize=100), fast_send, lambda e: True)
        slow_task = asyncio.create_task(slow.run())
        fast_task = asyncio.create_task(fast.run())
        for i in range(10):
            bus.publish(MODEL_STATUS_CHANGED, "tenant-a", "iris", {"n": i})
            await asyncio.sleep(0)
        assert await asyncio.wait_for(slow_task, 5) is SLOW_CONSUMER
        assert slow.subscription.dropped
        await asyncio.wait_for(_until(lambda: len(fast_heard) == 10), 5)
        assert [m["data"]["n"] for m in fast_heard] == list(range(10))
        fast.subscription.close()
        assert await asyncio.wait_for(fast_task, 5) is None

        # A send that stalls past its timeout ends the socket too, even before the queue fills.
        stalled = EventPump(
            bus.subscribe(maxsize=100), slow_send, lambda e: True, send_timeout=0.1, drop_check=0.01
        )
        stalled_task = asyncio.create_task(stalled.run())
        bus.publish(MODEL_CREATED, "tenant-a", "iris", {})
        assert await asyncio.wait_for(stalled_task, 5) is SLOW_CONSUMER

    asyncio.run(scenario())


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_a_slow_socket_is_closed_with_1013(make_server) -> None:
    """The same over a real socket: a client that stops reading, big events, a queue of two."""
    srv = make_server(ws_queue_size=2, ws_send_timeout_seconds=60.0)
    with open_socket(srv, srv.tenant_token("tenant-a"), max_size=None, max_queue=1) as ws:
        welcome(ws)
        blob = "x" * 1_000_000
        bus = srv.platform.events
        for i in range(64):
            bus.publish(MODEL_STATUS_CHANGED, "tenant-a", "iris", {"n": i, "blob": blob})
        # Read only once the bus has given up on the socket (a peek at its subscribers: there is no
        # public count), so that the client really was behind when it happened.
        wait_for(lambda: len(bus._subscribers) == 0, timeout=20)
        code, _ = closed_with(ws, timeout=20)
    assert code == 1013
