"""Language models on a replica, through the official ``openai`` client and plain HTTP: a tiny GPT-2
built in the test (random weights, real tokenizer) and the packaged all-MiniLM-L6-v2 embeddings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from llm_models import TINY_CONTEXT, build_tiny_classifier, build_tiny_gpt2
from server_helpers import ServerProcess, running_server

pytestmark = pytest.mark.llm

LOAD_TIMEOUT = 120.0  # transformers' import alone takes many seconds on two shared cores


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir: Path) -> Iterator[ServerProcess]:
    with running_server("huggingface", tiny_gpt2_dir, name="tiny", ready_timeout=LOAD_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def long_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A tiny GPT-2 with a long context, so a generation lasts long enough to be walked away from."""
    model_dir = build_tiny_gpt2(tmp_path_factory.mktemp("long-gpt2"), context=1024)
    with running_server("huggingface", model_dir, name="long", ready_timeout=LOAD_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def minilm(minilm_model_dir: Path) -> Iterator[ServerProcess]:
    with running_server("huggingface", minilm_model_dir, name="minilm", ready_timeout=LOAD_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def tokenizer(tiny_gpt2_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_gpt2_dir))


def client_for(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/openai/v1", api_key="unused", max_retries=0)


HELLO = [{"role": "user", "content": "hello world"}]


def test_models_lists_the_context_length(gpt2: ServerProcess) -> None:
    models = client_for(gpt2).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].model_extra is not None
    assert models.data[0].model_extra["max_model_len"] == TINY_CONTEXT


def test_chat_completion_counts_usage_with_the_tokenizer(gpt2: ServerProcess, tokenizer: Any) -> None:
    answer = client_for(gpt2).chat.completions.create(model="tiny", messages=HELLO, max_tokens=5)
    prompt = tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    expected_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert answer.model == "tiny"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == expected_prompt
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    if choice.finish_reason == "length":
        assert answer.usage.completion_tokens == 5
    else:  # the end-of-text token came first
        assert choice.finish_reason == "stop" and answer.usage.completion_tokens <= 5
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_max_completion_tokens_wins_and_n_gives_choices(gpt2: ServerProcess) -> None:
    answer = client_for(gpt2).chat.completions.create(
        model="tiny", messages=HELLO, max_completion_tokens=3, max_tokens=50, n=3, temperature=0.9, seed=7
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert answer.usage is not None
    assert answer.usage.completion_tokens <= 9
    assert all(c.finish_reason in ("length", "stop") for c in answer.choices)


def test_seed_repeats_the_text_alone_or_batched_with_others(gpt2: ServerProcess) -> None:
    """A seeded request gives the same text alone and while sharing decoding steps with other
    requests: batching changes nothing in what each request computes."""
    body = {
        "model": "tiny",
        "prompt": "the quick brown fox",
        "max_tokens": 12,
        "seed": 42,
        "temperature": 1.0,
    }
    with httpx.Client(base_url=gpt2.base_url, timeout=60) as http:
        alone = http.post("/openai/v1/completions", json=body).json()["choices"][0]["text"]

    async def together() -> list[str]:
        async with httpx.AsyncClient(base_url=gpt2.base_url, timeout=60) as http:
            others = [
                {"model": "tiny", "prompt": p, "max_tokens": 30, "temperature": 0}
                for p in ("hello", "numbers like 1 2 3", "a model server answers")
            ]
            answers = await asyncio.gather(
                *(http.post("/openai/v1/completions", json=b) for b in [*others, body, *others])
            )
            return [a.json()["choices"][0]["text"] for a in answers]

    assert asyncio.run(together())[3] == alone


def test_concurrent_generations_share_decoding_steps(gpt2: ServerProcess) -> None:
    stats_before = httpx.get(gpt2.base_url + "/inferbox/stats").json()["generation"]

    async def burst() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=gpt2.base_url, timeout=60) as http:
            body = {"model": "tiny", "prompt": "hello", "max_tokens": 40, "temperature": 0}
            answers = await asyncio.gather(
                *(http.post("/openai/v1/completions", json=body) for _ in range(8))
            )
            return [a.json() for a in answers]

    answers = asyncio.run(burst())
    stats = httpx.get(gpt2.base_url + "/inferbox/stats").json()["generation"]
    generated = sum(a["usage"]["completion_tokens"] for a in answers)
    steps = stats["steps"] - stats_before["steps"]
    # One at a time, every token after each prefill would be its own step.
    assert stats["maxStepRows"] > 1
    assert steps < generated - len(answers)
    assert len({a["choices"][0]["text"] for a in answers}) == 1  # greedy: same prompt, same text


def test_stream_with_usage(gpt2: ServerProcess) -> None:
    stream = client_for(gpt2).chat.completions.create(
        model="tiny",
        messages=HELLO,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    whole = client_for(gpt2).chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=8, temperature=0
    )
    assert text == whole.choices[0].message.content
    assert finishes == [whole.choices[0].finish_reason]
    assert whole.usage is not None
    assert usage.total_tokens == whole.usage.total_tokens


def test_stop_string_ends_the_text_before_it(gpt2: ServerProcess) -> None:
    client = client_for(gpt2)
    free = client.completions.create(model="tiny", prompt="hello world", max_tokens=30, temperature=0)
    text = free.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip(), f"greedy text without a usable stop string: {text!r}"
    stopped = client.completions.create(
        model="tiny", prompt="hello world", max_tokens=30, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == text[: text.index(stop)]


def test_completions_with_several_prompts_and_token_ids(gpt2: ServerProcess, tokenizer: Any) -> None:
    ids = tokenizer("hello")["input_ids"]
    answer = client_for(gpt2).completions.create(
        model="tiny", prompt=[[*ids], [*ids, *ids]], max_tokens=2, n=2, temperature=0
    )
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 3 * len(ids)
    assert answer.usage.completion_tokens <= 8


class TestTokenBudget:
    """The gateway's ``x-inferbox-max-tokens``: prompt + completions never pass it."""

    def post(self, server: ServerProcess, budget: str, **body: Any) -> httpx.Response:
        payload = {"model": "tiny", "prompt": "hello world", "temperature": 0, **body}
        return httpx.post(
            server.base_url + "/openai/v1/completions",
            json=payload,
            headers={"x-inferbox-max-tokens": budget},
            timeout=60,
        )

    def test_generation_is_capped_to_the_budget(self, gpt2: ServerProcess) -> None:
        answer = self.post(gpt2, "10", max_tokens=100).json()
        assert answer["usage"]["total_tokens"] <= 10
        assert answer["choices"][0]["finish_reason"] == "length"

    def test_the_cap_holds_over_n_choices_and_streams(self, gpt2: ServerProcess) -> None:
        answer = self.post(gpt2, "15", n=3, max_tokens=50).json()
        assert answer["usage"]["total_tokens"] <= 15
        with httpx.stream(
            "POST",
            gpt2.base_url + "/openai/v1/completions",
            json={
                "model": "tiny",
                "prompt": "hello world",
                "stream": True,
                "n": 2,
                "stream_options": {"include_usage": True},
            },
            headers={"x-inferbox-max-tokens": "13"},
            timeout=60,
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        last = json.loads(lines[-1].removeprefix("data: "))
        assert last["usage"]["total_tokens"] <= 13

    def test_a_prompt_over_the_budget_is_refused(self, gpt2: ServerProcess) -> None:
        response = self.post(gpt2, "3")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "token_budget_exceeded"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    @pytest.mark.parametrize("value", ["-1", "ten", "1" * 30])
    def test_a_malformed_budget_is_a_400(self, gpt2: ServerProcess, value: str) -> None:
        response = self.post(gpt2, value)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_token_budget"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 100}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": TINY_CONTEXT * 2}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"seed": 2**70}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_bad_values_are_openai_400s(gpt2: ServerProcess, overrides: dict[str, Any], param: str) -> None:
    body = {"model": "tiny", "messages": HELLO, **overrides}
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(gpt2).chat.completions.create(**body)
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == param


def test_a_prompt_longer_than_the_context_is_a_400(gpt2: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(gpt2).completions.create(model="tiny", prompt="hello " * TINY_CONTEXT)
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"model": "tiny"}', b'{"model": "tiny", "prompt": [99999]}'])
def test_malformed_bodies_are_400s_in_openai_shape(gpt2: ServerProcess, body: bytes) -> None:
    response = httpx.post(gpt2.base_url + "/openai/v1/completions", content=body)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_v1_and_v2_predict_still_work(gpt2: ServerProcess) -> None:
    v1 = httpx.post(
        gpt2.base_url + "/v1/models/tiny:predict", json={"instances": ["hello", "the fox"]}, timeout=60
    )
    assert v1.status_code == 200
    predictions = v1.json()["predictions"]
    assert len(predictions) == 2 and all(isinstance(p, str) and p for p in predictions)
    v2 = httpx.post(
        gpt2.base_url + "/v2/models/tiny/infer",
        json={"inputs": [{"name": "input-0", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]},
        timeout=60,
    )
    assert v2.status_code == 200
    assert v2.json()["outputs"][0]["data"] == [predictions[0]]


def test_embeddings_of_similar_sentences_are_closer(minilm: ServerProcess) -> None:
    sentences = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell sharply today.",
    ]
    answer = client_for(minilm).embeddings.create(model="minilm", input=sentences)  # base64 by default
    vectors = np.array([d.embedding for d in answer.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    floats = client_for(minilm).embeddings.create(model="minilm", input=sentences[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vectors[0], atol=1e-5)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 3 * 5


def test_embeddings_budget_and_wrong_task(minilm: ServerProcess, gpt2: ServerProcess) -> None:
    response = httpx.post(
        minilm.base_url + "/openai/v1/embeddings",
        json={"model": "minilm", "input": "a sentence of several tokens"},
        headers={"x-inferbox-max-tokens": "2"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "token_budget_exceeded"
    with pytest.raises(openai.NotFoundError):
        client_for(minilm).chat.completions.create(model="minilm", messages=HELLO)
    with pytest.raises(openai.NotFoundError):
        client_for(gpt2).embeddings.create(model="tiny", input="hello")
    with pytest.raises(openai.BadRequestError):
        client_for(minilm).embeddings.create(model="minilm", input="hi", dimensions=10)


def generation_steps_after_idle(server: ServerProcess) -> int:
    """Engine steps so far, once no request is in flight any more (polled, bounded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = httpx.get(server.base_url + "/inferbox/stats").json()
        if stats["inflight"] == 0:
            steps: int = stats["generation"]["steps"]
            return steps
        time.sleep(0.05)
    raise AssertionError("a request stayed in flight")


LONG = {"model": "long", "prompt": "hello", "max_tokens": 1000, "temperature": 0}


def test_a_dropped_stream_stops_its_generation(long_gpt2: ServerProcess) -> None:
    before = generation_steps_after_idle(long_gpt2)
    with httpx.stream(
        "POST", long_gpt2.base_url + "/openai/v1/completions", json={**LONG, "stream": True}, timeout=60
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # leave after the first chunk: the connection closes
    assert generation_steps_after_idle(long_gpt2) - before < 1000


def test_a_dropped_request_stops_its_generation(long_gpt2: ServerProcess) -> None:
    before = generation_steps_after_idle(long_gpt2)
    with pytest.raises(httpx.ReadTimeout):  # the caller gives up and hangs up
        httpx.post(
            long_gpt2.base_url + "/openai/v1/completions", json=LONG, timeout=httpx.Timeout(60, read=0.2)
        )
    assert generation_steps_after_idle(long_gpt2) - before < 1000
    # and the replica still serves
    answer = httpx.post(
        long_gpt2.base_url + "/openai/v1/completions", json={**LONG, "max_tokens": 3}, timeout=60
    )
    assert answer.json()["usage"]["completion_tokens"] == 3


def test_text_classification_from_the_config(tmp_path: Path) -> None:
    from inferbox.server.frameworks import load_model

    model = load_model("huggingface", build_tiny_classifier(tmp_path / "classifier"))
    assert getattr(model, "task", None) == "text-classification"
    [predictions] = model.predict(model.prepare(np.array(["hello world", "the fox"], dtype=object)))
    assert [p["label"] in ("negative", "positive") for p in predictions] == [True, True]
    assert all(0.0 <= p["score"] <= 1.0 for p in predictions)


def test_task_argument_overrides_the_config(tiny_gpt2_dir: Path) -> None:
    """``--task`` (the model's args) wins: the GPT-2 as an encoder gives embeddings."""
    from inferbox.server.frameworks import load_model

    model = load_model("huggingface", tiny_gpt2_dir, task="feature-extraction")
    [vectors] = model.predict(model.prepare(np.array(["hello"], dtype=object)))
    assert vectors.shape == (1, 32)
