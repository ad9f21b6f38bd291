"""Publications of `modelType: openai`: the gateway speaks the OpenAI API and counts tokens.

inferbox's own LLM runtime is not built yet, so the upstream here is a stand-in OpenAI-compatible server
(as KServe's Hugging Face server answers under /openai/v1) on loopback, and the model's row points at it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from support import RunningServer, free_port, gateway_process, wait_for

from inferbox.control.audit import Actor
from inferbox.control.model_rows import ModelRecord
from inferbox.store.tables import Model

USAGE = {"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30}


async def stand_in_llm(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An OpenAI-compatible server at /openai/v1: every completion costs 30 tokens."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/openai/v1/models":
        body: dict[str, Any] = {"object": "list", "data": [{"id": "chat", "object": "model"}]}
    elif path in ("/openai/v1/chat/completions", "/openai/v1/completions", "/openai/v1/embeddings"):
        body = {
            "id": "cmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
            "usage": USAGE,
        }
    else:
        body = {"error": "not found"}
    raw = orjson.dumps(body)
    status = 404 if "error" in body else 200
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": raw})


@pytest.fixture
def llm_port() -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(stand_in_llm, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_openai_routes_forward_and_count_tokens(make_server, llm_port: int) -> None:
    srv: RunningServer = make_server()
    srv.platform.tenants.create("tenant-a")
    stamp = datetime.now(UTC)
    with srv.platform.store.session() as session:
        model = Model(
            namespace="tenant-a",
            name="chat",
            framework="huggingface",
            storage_uri="/models/chat",
            min_replicas=1,
            max_replicas=1,
            scale_target=10,
            scale_metric="concurrency",
            generation=1,
            port=llm_port,
            created_at=stamp,
            updated_at=stamp,
        )
        session.add(model)
    published = srv.platform.publishing.publish(
        ModelRecord.of(model), {"rateLimiting": {"tokensPerHour": 100}}, Actor("test", "tenant-a", None), None
    )["publishedModel"]
    assert published["modelType"] == "openai"  # the default for a Hugging Face model
    docs = published["documentation"]
    assert docs["exampleRequests"][0]["url"].endswith("/models/chat/chat/completions")
    key = published["apiKey"]
    with gateway_process(srv) as (url, _):
        base = f"{url}/models/chat"
        headers = {"X-API-Key": key}
        models = httpx.get(f"{base}/models", headers=headers)
        assert models.status_code == 200
        assert models.json()["data"][0]["id"] == "chat"
        chat = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
        answers = [httpx.post(f"{base}/chat/completions", json=chat, headers=headers) for _ in range(5)]
        # 30 tokens a call against 100 an hour: calls run while any budget is left, then stop.
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
        assert answers[0].json()["usage"] == USAGE
        assert answers[4].json() == {
            "error": "Rate limit exceeded",
            "details": "tokensPerHour: 100 tokens per hour",
        }
        assert int(answers[4].headers["retry-after"]) > 0
        assert httpx.post(f"{base}/predict", json={}, headers=headers).status_code == 404
        assert httpx.post(f"{base}/embeddings", json={"input": "x"}).status_code == 401

    with srv.tenant("tenant-a") as c:
        usage = c.get("/api/models/chat/publish").json()["usage"]
    assert usage["totalRequests"] == 5  # the models call and four completions
    assert usage["tokensUsed"] == 120
