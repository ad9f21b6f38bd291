"""`POST /api/models/{name}/chat`, the console's chat: a tiny GPT-2 (built in the test) on a real replica,
called over loopback HTTP with a signed-in tenant's token, streamed and not, and the refusals."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from support import RunningServer, deploy, wait_for, wait_ready

pytestmark = pytest.mark.llm

HELLO = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def srv(module_servers) -> RunningServer:  # type: ignore[no-untyped-def]
    return module_servers()


@pytest.fixture(scope="module")
def gpt2(srv: RunningServer, tiny_gpt2_dir: Path) -> str:
    with srv.tenant("tenant-a") as c:
        body = {"name": "tiny", "framework": "huggingface", "storageUri": f"file://{tiny_gpt2_dir}"}
        r = c.post("/api/models", json=body)
        assert r.status_code == 201, r.text
        wait_ready(c, "tiny", timeout=120)
    return "tiny"


def events(text: str) -> list[Any]:
    """The `data:` payloads of a server-sent event stream, `[DONE]` as the string."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        block = block.strip()
        if block.startswith("data:"):
            payload = block[5:].strip()
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


def test_the_example_tells_the_console_a_text_generation_model_chats(srv: RunningServer, gpt2: str) -> None:
    with srv.tenant("tenant-a") as c:
        assert c.get(f"/api/models/{gpt2}/example").json()["task"] == "text-generation"


def test_the_openapi_documents_the_chat_route(srv: RunningServer) -> None:
    with srv.client() as c:
        op = c.get("/api/openapi.json").json()["paths"]["/api/models/{name}/chat"]["post"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "401", "404", "413"} <= set(op["responses"])
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["messages"] and "stream_options" in schema["properties"]


def test_a_stream_arrives_chunk_by_chunk_with_the_usage_last(srv: RunningServer, gpt2: str) -> None:
    body = {
        "messages": HELLO,
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with srv.tenant("tenant-a") as c, c.stream("POST", f"/api/models/{gpt2}/chat", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        # Passed on as it comes: chunked, never gathered to learn its length first.
        assert "content-length" not in r.headers
        text = "".join(r.iter_text())
    got = events(text)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    deltas = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(deltas) >= 2, text
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == gpt2 for c in chunks)
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 8 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8
    assert all(c.get("usage") is None for c in chunks[:-1])


def test_a_stream_without_stream_options_has_no_usage_chunk(srv: RunningServer, gpt2: str) -> None:
    body = {"messages": HELLO, "max_tokens": 3, "stream": True}
    with srv.tenant("tenant-a") as c:
        r = c.post(f"/api/models/{gpt2}/chat", json=body)
    assert r.status_code == 200
    got = events(r.text)
    assert got[-1] == "[DONE]" and all(c.get("usage") is None for c in got[:-1])


def test_without_stream_the_answer_is_one_completion(srv: RunningServer, gpt2: str) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.post(f"/api/models/{gpt2}/chat", json={"messages": HELLO, "max_tokens": 4, "model": "ignored"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["object"] == "chat.completion" and answer["model"] == gpt2
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] == 4


def test_the_admin_reaches_a_tenants_model_with_its_namespace(srv: RunningServer, gpt2: str) -> None:
    with srv.admin() as c:
        r = c.post(
            f"/api/models/{gpt2}/chat",
            params={"namespace": "tenant-a"},
            json={"messages": HELLO, "max_tokens": 2},
        )
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": 5000}, "max_tokens"),
        ({"messages": HELLO, "temperature": 3}, "temperature"),
        ({"messages": HELLO, "stream": "often"}, "stream"),
        ({"messages": HELLO, "tools": [{"type": "function"}]}, "tools"),
        ({"messages": [{"role": "user", "content": "x" * (32 * 1024 + 1)}]}, "content"),
        ({"messages": HELLO * 257}, "messages"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(
    srv: RunningServer, gpt2: str, body: dict[str, Any], field: str
) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.post(f"/api/models/{gpt2}/chat", json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["details"]


def test_a_body_that_is_not_json_is_a_400(srv: RunningServer, gpt2: str) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.post(
            f"/api/models/{gpt2}/chat", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert r.status_code == 400
    assert r.json()["details"] == "Request body must be valid JSON"


def test_a_prompt_longer_than_the_context_is_the_replicas_400_in_the_specs_shape(
    srv: RunningServer, gpt2: str
) -> None:
    long = [{"role": "user", "content": "hello world " * 200}]
    with srv.tenant("tenant-a") as c:
        r = c.post(f"/api/models/{gpt2}/chat", json={"messages": long, "stream": True})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "Invalid chat request" and "context" in body["details"]


def test_a_body_over_a_mebibyte_is_a_413(srv: RunningServer, gpt2: str) -> None:
    huge = [{"role": "user", "content": "x" * (1024 * 1024)}]
    with srv.tenant("tenant-a") as c:
        r = c.post(f"/api/models/{gpt2}/chat", json={"messages": huge})
    assert r.status_code == 413
    assert r.json()["error"] == "Request body too large"


def test_a_model_that_is_not_a_language_model_is_a_400(srv: RunningServer, sklearn_dir: Path) -> None:
    deploy(srv, sklearn_dir, name="iris")
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/iris/chat", json={"messages": HELLO})
    assert r.status_code == 400
    assert r.json()["error"] == "Not a language model"
    assert "sklearn" in r.json()["details"]
    with srv.tenant("tenant-a") as c:
        assert c.get("/api/models/iris/example").json()["task"] is None


def test_another_tenants_model_and_a_missing_one_are_404(srv: RunningServer, gpt2: str) -> None:
    with srv.tenant("tenant-b") as c:
        other = c.post(f"/api/models/{gpt2}/chat", json={"messages": HELLO})
        missing = c.post("/api/models/nothing-here/chat", json={"messages": HELLO})
    assert other.status_code == 404 and missing.status_code == 404
    # Another tenant's model reads as no model at all.
    assert other.json()["error"] == missing.json()["error"] == "Model not found"


def test_without_a_token_it_is_a_401(srv: RunningServer, gpt2: str) -> None:
    r = httpx.post(f"{srv.base_url}/api/models/{gpt2}/chat", json={"messages": HELLO})
    assert r.status_code == 401
    assert r.json()["error"] == "Authentication required"
    with srv.client("not-a-token") as c:
        assert c.post(f"/api/models/{gpt2}/chat", json={"messages": HELLO}).status_code == 401


def _outstanding(srv: RunningServer, name: str) -> list[int]:
    """How many calls hold each replica of tenant-a's `name` (what autoscaling and scale-to-zero read)."""
    group = srv.platform.runtime._groups[("tenant-a", name)]  # type: ignore[attr-defined]
    return [r.outstanding for r in group.replicas]


def test_a_caller_leaving_mid_stream_lets_the_replica_go(srv: RunningServer, gpt2: str) -> None:
    body = {"messages": HELLO, "max_tokens": 100, "stream": True}
    with srv.tenant("tenant-a") as c, c.stream("POST", f"/api/models/{gpt2}/chat", json=body) as r:
        assert r.status_code == 200
        first = next(r.iter_raw())
        assert first.startswith(b"data:")
    # The caller hung up after one chunk: the replica is not held for ever (a leak would keep the model
    # busy, never scaled to zero).
    wait_for(lambda: sum(_outstanding(srv, gpt2)) == 0, timeout=30)


def test_a_replica_dying_mid_stream_ends_the_stream_without_done(srv: RunningServer, gpt2: str) -> None:
    """Last in the module: it kills the replica (the runtime restarts it). That the first chunk came
    while the replica still had an answer to finish also shows the route passes chunks on as they come:
    a route that gathered the answer first would have sent nothing, or the whole answer with its
    `[DONE]`."""
    (replica,) = [r for r in srv.platform.runtime.replicas("tenant-a") if r.model == gpt2]
    assert replica.pid is not None
    body = {"messages": HELLO, "max_tokens": 100, "stream": True}
    with srv.tenant("tenant-a") as c, c.stream("POST", f"/api/models/{gpt2}/chat", json=body) as r:
        assert r.status_code == 200
        chunks = r.iter_raw()
        received = next(chunks)
        os.kill(replica.pid, signal.SIGKILL)
        received += b"".join(chunks)  # ends (no hang, no error page in the middle of the stream)
    got = events(received.decode())
    assert got and "[DONE]" not in got, received[-300:]
    assert all(isinstance(e, dict) and e["object"] == "chat.completion.chunk" for e in got)
    # The replica is released and the model comes back for the next caller.
    with srv.tenant("tenant-a") as c:
        wait_ready(c, gpt2, timeout=120)
        again = c.post(f"/api/models/{gpt2}/chat", json={"messages": HELLO, "max_tokens": 2})
    assert again.status_code == 200, again.text
