"""Publications of `modelType: openai` against a stand-in replica: token reservations, the budget header,
streams passed on as they come, usage counted exactly, the x-ratelimit-* headers.

The stand-in speaks the replica's side of the contract (inferbox/server's OpenAI endpoints): a "token"
is a word, prompt + completion stays within `x-inferbox-max-tokens`, a prompt that alone exceeds it is
refused with `token_budget_exceeded`, and streams send one token a chunk with usage when asked. The
tests against inferbox's own model server (a real tokenizer and model) are in test_openai_llm.py.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from support import REDIS_URL, RunningServer, free_port, gateway_process, wait_for

from inferbox.control.audit import Actor
from inferbox.control.model_rows import ModelRecord
from inferbox.store.tables import Model

USAGE = {"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}


class StandIn:
    """The replica's side of the contract, with what it was sent kept for the tests to read."""

    def __init__(self) -> None:
        self.budgets: list[int | None] = []
        self.hold = (
            threading.Event()
        )  # a stream with "hold" in its prompt waits on this after its first token
        self.hold.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/openai/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": "chat", "max_model_len": 64}]})
            return
        if path not in ("/openai/v1/chat/completions", "/openai/v1/completions", "/openai/v1/embeddings"):
            await _json(send, 404, {"error": "not found"})
            return
        request = orjson.loads(body)
        budget = int(headers[b"x-inferbox-max-tokens"]) if b"x-inferbox-max-tokens" in headers else None
        self.budgets.append(budget)
        words = " ".join(m["content"] for m in request.get("messages", [])) or str(request.get("prompt", ""))
        prompt = 11 + len(words.split())
        if budget is not None and prompt > budget:
            error = {"message": "prompt exceeds the budget", "type": "invalid_request_error", "param": None}
            await _json(send, 400, {"error": {**error, "code": "token_budget_exceeded"}})
            return
        wanted = request.get("max_tokens") or 18
        completion = min(wanted, budget - prompt) if budget is not None else wanted
        finish = "length" if completion < 18 else "stop"
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if not request.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": "x " * completion}}
            await _json(
                send,
                200,
                {"object": "chat.completion", "choices": [{**choice, "finish_reason": finish}]}
                | {"usage": usage},
            )
            return
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(completion):
            last = i == completion - 1
            chunk = {
                "object": "chat.completion.chunk",
                "choices": [
                    {"index": 0, "delta": {"content": "x "}, "finish_reason": finish if last else None}
                ],
            }
            if include_usage:
                chunk["usage"] = None
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                    "more_body": True,
                }
            )
            if i == 0 and "hold" in words:
                await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 30)
        if include_usage:
            tail = {"object": "chat.completion.chunk", "choices": [], "usage": usage}
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(tail) + b"\n\n",
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[StandIn, int]]:
    app = StandIn()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    yield app, port
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def srv(module_servers) -> RunningServer:  # type: ignore[no-untyped-def]
    server: RunningServer = module_servers(redis_url=REDIS_URL)
    server.platform.tenants.create("tenant-a")
    return server


@pytest.fixture(scope="module")
def gateways(srv: RunningServer) -> Iterator[tuple[str, str]]:
    """Two standalone gateways sharing the store and Redis: one budget between them."""
    shared = {"REDIS_URL": REDIS_URL, "INFERBOX_REDIS_PREFIX": srv.settings.redis_prefix}
    with gateway_process(srv, **shared) as (first, _), gateway_process(srv, **shared) as (second, _):
        yield first, second


def publish_chat(srv: RunningServer, port: int, tokens_per_hour: int, **limits: int) -> tuple[str, str]:
    """A model row pointing at the stand-in, published with `tokens_per_hour`: (its name, its key)."""
    name = f"chat-{secrets.token_hex(3)}"
    stamp = datetime.now(UTC)
    with srv.platform.store.session() as session:
        model = Model(
            namespace="tenant-a",
            name=name,
            framework="huggingface",
            storage_uri="/models/chat",
            min_replicas=1,
            max_replicas=1,
            scale_target=10,
            scale_metric="concurrency",
            generation=1,
            port=port,
            created_at=stamp,
            updated_at=stamp,
        )
        session.add(model)
    config = {"rateLimiting": {"tokensPerHour": tokens_per_hour, **limits}}
    published = srv.platform.publishing.publish(
        ModelRecord.of(model), config, Actor("test", "tenant-a", None), None
    )["publishedModel"]
    assert published["modelType"] == "openai"  # the default for a Hugging Face model
    return name, published["apiKey"]


def wait_for_route(gateways: tuple[str, str], name: str) -> None:
    """Until both gateways serve the new route (they reload every second). Asked without a key from an
    address of its own, so that neither quota nor the callers' refused-credential budget is spent."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as probe:
        for gateway in gateways:
            url = f"{gateway}/models/{name}/models"
            wait_for(lambda url=url: probe.get(url).status_code != 404, interval=0.2)


def usage_of(srv: RunningServer, name: str, requests: int) -> dict[str, Any]:
    """The publication's usage once the gateways flushed `requests` calls."""
    with srv.tenant("tenant-a") as c:
        return wait_for(
            lambda: (
                (u := c.get(f"/api/models/{name}/publish").json()["usage"])["totalRequests"] == requests and u
            ),
            timeout=10,
        )


def remaining(base: str, key: str) -> int:
    """The budget left, as the headers of a models call say it (which spends no tokens)."""
    r = httpx.get(f"{base}/models", headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return int(r.headers["x-ratelimit-remaining-tokens"])


def test_calls_reserve_then_settle_to_their_usage_and_stop_before_the_budget_is_overrun(
    srv: RunningServer, stand_in: tuple[StandIn, int], gateways: tuple[str, str]
) -> None:
    app, port = stand_in
    name, key = publish_chat(srv, port, 100)
    wait_for_route(gateways, name)
    base = f"{gateways[0]}/models/{name}"
    headers = {"X-API-Key": key, "x-inferbox-max-tokens": "1000000"}  # a caller's copy is never passed on
    models = httpx.get(f"{base}/models", headers=headers)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "chat"
    app.budgets.clear()
    answers = [httpx.post(f"{base}/chat/completions", json=CHAT, headers=headers) for _ in range(5)]
    # 30 tokens a call against 100 an hour: three fit; the fourth is granted the 10 left, which its
    # 12-token prompt does not fit in: the replica refuses it, nothing is spent, and the fifth call
    # finds the same 10 left.
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert app.budgets == [64, 64, 40, 10, 10]  # one context (64) at most, then what was left
    assert answers[0].json()["usage"] == USAGE
    first = answers[0].headers
    assert first["x-ratelimit-limit-tokens"] == "100" and first["x-ratelimit-remaining-tokens"] == "70"
    # The models call before them is metadata: free, like the other protocols' metadata.
    assert first["x-ratelimit-limit-requests"] == "100" and first["x-ratelimit-remaining-requests"] == "99"
    assert first["x-ratelimit-reset-tokens"].endswith("s") and first["X-RateLimit-Limit"] == "100"
    assert answers[4].json() == {
        "error": "Rate limit exceeded",
        "details": "tokensPerHour: 100 tokens per hour",
    }
    assert 0 < int(answers[4].headers["retry-after"]) <= 3600
    assert answers[4].headers["x-ratelimit-remaining-tokens"] == "10"
    assert httpx.post(f"{base}/predict", json={}, headers=headers).status_code == 404
    assert httpx.post(f"{base}/embeddings", json={"input": "x"}).status_code == 401
    usage = usage_of(srv, name, 5)  # the five forwarded calls (the models call is free)
    assert usage["tokensUsed"] == 90
    assert remaining(f"{gateways[1]}/models/{name}", key) == 10  # the other gateway sees the same budget


def test_a_call_granted_less_than_it_asked_ends_with_length_within_the_budget(
    srv: RunningServer, stand_in: tuple[StandIn, int], gateways: tuple[str, str]
) -> None:
    _, port = stand_in
    name, key = publish_chat(srv, port, 20)
    wait_for_route(gateways, name)
    base = f"{gateways[0]}/models/{name}"
    r = httpx.post(f"{base}/chat/completions", json=CHAT, headers={"X-API-Key": key})
    assert r.status_code == 200
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["usage"]["total_tokens"] == 20
    assert r.headers["x-ratelimit-remaining-tokens"] == "0"
    spent = httpx.post(f"{base}/chat/completions", json=CHAT, headers={"X-API-Key": key})
    assert spent.status_code == 429 and int(spent.headers["retry-after"]) > 0
    assert usage_of(srv, name, 1)["tokensUsed"] == 20


def test_streams_pass_chunk_by_chunk_and_count_their_usage_exactly(
    srv: RunningServer, stand_in: tuple[StandIn, int], gateways: tuple[str, str]
) -> None:
    app, port = stand_in
    name, key = publish_chat(srv, port, 1000)
    wait_for_route(gateways, name)
    base = f"{gateways[0]}/models/{name}"
    headers = {"X-API-Key": key}
    held = {**CHAT, "messages": [{"role": "user", "content": "hold"}], "stream": True}
    app.hold.clear()
    try:
        with httpx.stream("POST", f"{base}/chat/completions", json=held, headers=headers) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-ratelimit-limit-tokens"] == "1000"
            lines = r.iter_lines()
            # The first token arrives while the replica still holds the rest: nothing is buffered.
            first = next(line for line in lines if line.startswith("data:"))
            assert orjson.loads(first[5:])["choices"][0]["delta"]["content"] == "x "
            app.hold.set()
            rest = [line[5:].strip() for line in lines if line.startswith("data:")]
    finally:
        app.hold.set()
    # The caller did not ask for usage: the usage chunk the gateway asked for is not passed on.
    assert rest[-1] == "[DONE]" and len(rest) == 18
    assert all(orjson.loads(e)["choices"] for e in rest[:-1])
    with_usage = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{base}/chat/completions", json=with_usage, headers=headers) as r:
        events = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert orjson.loads(events[-2])["usage"] == USAGE
    assert remaining(base, key) == 1000 - 30 - 30
    assert usage_of(srv, name, 2)["tokensUsed"] == 60


def test_a_caller_that_leaves_mid_stream_is_charged_what_was_generated(
    srv: RunningServer, stand_in: tuple[StandIn, int], gateways: tuple[str, str]
) -> None:
    app, port = stand_in
    name, key = publish_chat(srv, port, 1000)
    wait_for_route(gateways, name)
    base = f"{gateways[0]}/models/{name}"
    held = {**CHAT, "messages": [{"role": "user", "content": "hold"}], "stream": True}
    app.hold.clear()
    try:
        with httpx.stream("POST", f"{base}/chat/completions", json=held, headers={"X-API-Key": key}) as r:
            next(line for line in r.iter_lines() if line.startswith("data:"))
        # The caller is gone; the replica finishes its 18 tokens and the gateway counts them.
    finally:
        app.hold.set()
    assert usage_of(srv, name, 1)["tokensUsed"] == 30
    assert remaining(base, key) == 970


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"messages": [], "n": 0}',
        b'{"messages": [], "n": 100000}',
        b'{"max_tokens": -1}',
    ],
)
def test_bodies_that_cannot_be_bounded_are_400_and_spend_nothing(
    srv: RunningServer, stand_in: tuple[StandIn, int], gateways: tuple[str, str], body: bytes
) -> None:
    _, port = stand_in
    name, key = publish_chat(srv, port, 100)
    wait_for_route(gateways, name)
    base = f"{gateways[0]}/models/{name}"
    r = httpx.post(
        f"{base}/chat/completions",
        content=body,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "Invalid request"
    assert r.headers["x-ratelimit-remaining-tokens"] == "100"
    assert remaining(base, key) == 100


def test_the_budget_race_on_two_gateways_never_overspends(
    srv: RunningServer, stand_in: tuple[StandIn, int], gateways: tuple[str, str]
) -> None:
    _, port = stand_in
    budget = 150  # about five 30-token streams
    name, key = publish_chat(srv, port, budget, requestsPerMinute=1000, burstLimit=1000, requestsPerHour=5000)
    wait_for_route(gateways, name)
    body = {**CHAT, "max_tokens": 18, "stream": True, "stream_options": {"include_usage": True}}

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, int, str | None]:
        base = f"{gateways[i % 2]}/models/{name}"
        async with client.stream(
            "POST", f"{base}/chat/completions", json=body, headers={"X-API-Key": key}
        ) as r:
            if r.status_code != 200:
                await r.aread()
                return r.status_code, 0, None
            events = [line[5:].strip() async for line in r.aiter_lines() if line.startswith("data:")]
        chunks = [orjson.loads(e) for e in events if e != "[DONE]"]
        finish = next(
            (
                c["choices"][0]["finish_reason"]
                for c in chunks
                if c["choices"] and c["choices"][0]["finish_reason"]
            ),
            None,
        )
        return 200, chunks[-1]["usage"]["total_tokens"], finish

    async def race() -> list[tuple[int, int, str | None]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(32))))

    results = asyncio.run(race())
    received = sum(total for _, total, _ in results)
    assert received <= budget
    assert all((s == 200 and f in ("stop", "length")) or s == 429 for s, _, f in results)
    # A refusal means less than a prompt was left: at least budget // (most a call holds) ran.
    assert sum(s == 200 for s, _, _ in results) >= 3
    assert remaining(f"{gateways[0]}/models/{name}", key) == budget - received  # nothing stays reserved
    with srv.tenant("tenant-a") as c:
        used = wait_for(
            lambda: (
                (u := c.get(f"/api/models/{name}/publish").json()["usage"]["tokensUsed"]) == received and u
            ),
            timeout=10,
        )
    assert used == received
