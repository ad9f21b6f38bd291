"""Published language models end to end: inferbox's own replicas (a tiny GPT-2 built in the test, the
packaged all-MiniLM-L6-v2) behind the gateway, called with the official `openai` client at the
published URL, the documented examples run as printed, and the budget race across two gateways."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from support import REDIS_URL, RunningServer, gateway_process, wait_for, wait_ready

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def srv(module_servers) -> RunningServer:  # type: ignore[no-untyped-def]
    server: RunningServer = module_servers(redis_url=REDIS_URL)
    server.platform.tenants.create("tenant-a")
    return server


def deploy(srv: RunningServer, name: str, model_dir: Path) -> None:
    with srv.tenant("tenant-a") as c:
        body = {"name": name, "framework": "huggingface", "storageUri": f"file://{model_dir}"}
        r = c.post("/api/models", json=body)
        assert r.status_code == 201, r.text
        wait_ready(c, name, timeout=120)


def publish(srv: RunningServer, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Publish `name` afresh: a new key, new usage and a new budget (even where SQLite gives the new
    publication the id of the one deleted before it)."""
    with srv.tenant("tenant-a") as c:
        c.delete(f"/api/models/{name}/publish")
        r = c.post(f"/api/models/{name}/publish", json={"config": config})
    assert r.status_code == 201, r.text
    return r.json()["publishedModel"]


def tokens_used(srv: RunningServer, name: str, expected: int) -> int:
    with srv.tenant("tenant-a") as c:
        return wait_for(
            lambda: (
                (u := c.get(f"/api/models/{name}/publish").json()["usage"]["tokensUsed"]) == expected and u
            ),
            timeout=10,
        )


@pytest.fixture(scope="module")
def gpt2(srv: RunningServer, tiny_gpt2_dir: Path) -> str:
    deploy(srv, "tiny", tiny_gpt2_dir)
    return "tiny"


@pytest.fixture(scope="module")
def minilm(srv: RunningServer, minilm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    # A tenant's local models live under INFERBOX_MODEL_ROOT (the temporary directory here).
    copy = shutil.copytree(minilm_model_dir, tmp_path_factory.mktemp("minilm") / "model")
    deploy(srv, "minilm", copy)
    return "minilm"


def test_an_openai_publication_documents_examples_that_run_as_printed(srv: RunningServer, gpt2: str) -> None:
    published = publish(srv, gpt2, {"rateLimiting": {"tokensPerHour": 10_000}})
    assert published["modelType"] == "openai"  # left out: a text-generation model's default
    examples = published["documentation"]["sdkExamples"]
    curl = subprocess.run(["bash", "-c", examples["curl"]], capture_output=True, text=True, timeout=60)
    answer = orjson.loads(curl.stdout)
    assert answer["object"] == "chat.completion", curl.stdout
    assert (
        answer["usage"]["total_tokens"]
        == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]
    )
    python = subprocess.run(
        [sys.executable, "-c", examples["python"]], capture_output=True, text=True, timeout=60
    )
    assert python.returncode == 0, python.stderr
    assert "total_tokens=" in python.stdout
    assert (
        published["documentation"]["exampleRequests"][0]["url"]
        == f"{published['externalUrl']}/v1/chat/completions"
    )


def test_the_openai_client_chats_streams_and_hears_429_once_the_budget_is_spent(
    srv: RunningServer, gpt2: str
) -> None:
    budget = 300
    published = publish(srv, gpt2, {"rateLimiting": {"tokensPerHour": budget}})
    client = openai.OpenAI(
        base_url=f"{published['externalUrl']}/v1", api_key=published["apiKey"], max_retries=0
    )
    messages = [{"role": "user", "content": "hello world"}]
    start = int(client.models.with_raw_response.list().headers["x-ratelimit-remaining-tokens"])
    assert start == budget
    raw = client.chat.completions.with_raw_response.create(model=gpt2, messages=messages, max_tokens=8)  # type: ignore[arg-type]
    chat = raw.parse()
    assert chat.usage is not None and chat.usage.completion_tokens <= 8
    received = chat.usage.total_tokens
    assert raw.headers["x-ratelimit-limit-tokens"] == str(budget)
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(start - received)
    assert int(raw.headers["x-ratelimit-remaining-requests"]) >= 0
    stream = client.chat.completions.create(
        model=gpt2,
        messages=messages,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    received += chunks[-1].usage.total_tokens
    plain = client.chat.completions.create(model=gpt2, messages=messages, max_tokens=8, stream=True)  # type: ignore[arg-type]
    # Without include_usage the caller sees no usage chunk (the gateway asked for one and kept it); what
    # it cost shows in the budget left, which a models call reads without spending tokens.
    assert all(c.choices for c in plain)
    left = int(client.models.with_raw_response.list().headers["x-ratelimit-remaining-tokens"])
    plain_total = start - received - left
    assert plain_total > 0
    received += plain_total
    with pytest.raises(openai.RateLimitError):
        for _ in range(100):  # calls run until the budget cannot hold another prompt
            more = client.chat.completions.create(model=gpt2, messages=messages, max_tokens=64)  # type: ignore[arg-type]
            assert more.usage is not None
            received += more.usage.total_tokens
    assert received <= start <= budget
    assert tokens_used(srv, gpt2, received) == received


def test_the_budget_race_across_two_gateways_never_overspends(srv: RunningServer, gpt2: str) -> None:
    budget = 150  # about five of these calls
    limits = {"tokensPerHour": budget, "requestsPerMinute": 1000, "requestsPerHour": 5000, "burstLimit": 1000}
    published = publish(srv, gpt2, {"rateLimiting": limits})
    key, path = published["apiKey"], published["externalPath"]
    body = {
        "model": gpt2,
        "messages": [{"role": "user", "content": "the quick brown fox"}],
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    shared = {"REDIS_URL": REDIS_URL, "INFERBOX_REDIS_PREFIX": srv.settings.redis_prefix}
    with gateway_process(srv, **shared) as (first, _), gateway_process(srv, **shared) as (second, _):
        wait_for(
            lambda: all(
                httpx.get(f"{g}{path}/v1/models", headers={"X-API-Key": key}).status_code == 200
                for g in (first, second)
            )
        )
        before = httpx.get(f"{first}{path}/v1/models", headers={"X-API-Key": key})
        start = int(before.headers["x-ratelimit-remaining-tokens"])
        assert start == budget

        async def one(client: httpx.AsyncClient, i: int) -> tuple[int, int, str | None]:
            url = f"{(first, second)[i % 2]}{path}/v1/chat/completions"
            async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                if r.status_code != 200:
                    await r.aread()
                    return r.status_code, 0, None
                events = [line[5:].strip() async for line in r.aiter_lines() if line.startswith("data:")]
            chunks = [orjson.loads(e) for e in events if e != "[DONE]"]
            reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
            return 200, chunks[-1]["usage"]["total_tokens"], next((f for f in reasons if f), None)

        async def race() -> list[tuple[int, int, str | None]]:
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as client:
                return list(await asyncio.gather(*(one(client, i) for i in range(32))))

        results = asyncio.run(race())
        received = sum(total for _, total, _ in results)
        assert received <= start <= budget
        assert all((s == 200 and f in ("stop", "length")) or s == 429 for s, _, f in results), results
        assert sum(s == 200 for s, _, _ in results) >= 2
        left = httpx.get(f"{second}{path}/v1/models", headers={"X-API-Key": key})
        # Nothing stays reserved: what is left is what was there less what the callers received.
        assert int(left.headers["x-ratelimit-remaining-tokens"]) == start - received
    assert tokens_used(srv, gpt2, received) == received


def test_an_embedding_model_is_published_with_embeddings(srv: RunningServer, minilm: str) -> None:
    published = publish(srv, minilm, {"modelType": "", "rateLimiting": {"tokensPerHour": 10_000}})
    assert published["modelType"] == "openai"
    docs = published["documentation"]
    assert docs["exampleRequests"][0]["url"].endswith("/v1/embeddings")
    python = subprocess.run(
        [sys.executable, "-c", docs["sdkExamples"]["python"]], capture_output=True, text=True, timeout=60
    )
    assert python.returncode == 0, python.stderr
    assert python.stdout.startswith("[384, 384]")
    curl = subprocess.run(
        ["bash", "-c", docs["sdkExamples"]["curl"]], capture_output=True, text=True, timeout=60
    )
    assert len(orjson.loads(curl.stdout)["data"]) == 2, curl.stdout
    client = openai.OpenAI(
        base_url=f"{published['externalUrl']}/v1", api_key=published["apiKey"], max_retries=0
    )
    out = client.embeddings.create(model=minilm, input=["a cat sat on the mat"])
    assert out.usage.total_tokens > 0 and len(out.data[0].embedding) == 384
    printed = int(re.search(r"total_tokens=(\d+)", python.stdout).group(1))  # type: ignore[union-attr]
    received = printed + orjson.loads(curl.stdout)["usage"]["total_tokens"] + out.usage.total_tokens
    assert tokens_used(srv, minilm, received) == received
