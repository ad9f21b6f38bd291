"""The documentation a publication carries: examples built from the real URL, key and a body that
fits the model, so that what is printed runs as printed."""

from __future__ import annotations

import json
import shlex

from inferbox.control.publishing_docs import documentation

KEY = "pk_live_" + "k" * 43


def docs(**kwargs):  # type: ignore[no-untyped-def]
    args = {
        "model_type": "traditional",
        "external_url": "http://localhost:8080/models/iris",
        "gateway_url": "http://localhost:8080",
        "public_hostname": None,
        "api_key": KEY,
        "example_input": [[5.1, 3.5, 1.4, 0.2]],
    }
    return documentation(**{**args, **kwargs})


def test_the_curl_example_is_one_shell_command_with_the_key_and_the_model_s_rows() -> None:
    d = docs()
    words = shlex.split(d["sdkExamples"]["curl"].replace("\\\n", " "))
    assert words[:4] == ["curl", "-X", "POST", "http://localhost:8080/models/iris/predict"]
    assert f"X-API-Key: {KEY}" in words
    assert json.loads(words[words.index("-d") + 1]) == {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    assert d["authHeaders"] == {"X-API-Key": KEY}
    [v1, v2, metadata] = d["exampleRequests"]
    assert v1["url"].endswith("/predict") and v2["url"].endswith("/infer") and metadata["method"] == "GET"
    tensor = json.loads(v2["body"])["inputs"][0]
    assert tensor["shape"] == [1, 4] and tensor["data"] == [5.1, 3.5, 1.4, 0.2]


def test_python_and_javascript_examples_name_the_same_call() -> None:
    d = docs()
    assert "'http://localhost:8080/models/iris/predict'" in d["sdkExamples"]["python"]
    assert f"'X-API-Key': '{KEY}'" in d["sdkExamples"]["python"]
    assert "fetch('http://localhost:8080/models/iris/predict'" in d["sdkExamples"]["javascript"]
    compile(d["sdkExamples"]["python"], "<example>", "exec")


def test_a_hostname_route_gets_a_local_test_with_its_host_header() -> None:
    d = docs(external_url="https://api.example.com/models/iris", public_hostname="api.example.com")
    local = shlex.split(d["localTest"]["curl"].replace("\\\n", " "))
    assert local[3] == "http://localhost:8080/models/iris/predict"
    assert "Host: api.example.com" in local


def test_openai_publications_show_chat_completions() -> None:
    d = docs(model_type="openai", model_name="tiny-chat")
    assert d["exampleRequests"][0]["url"].endswith("/chat/completions")
    body = json.loads(d["exampleRequests"][0]["body"])
    assert body["messages"][0]["role"] == "user" and body["model"] == "tiny-chat"
    assert "model='tiny-chat'" in d["sdkExamples"]["python"] or '"tiny-chat"' in d["sdkExamples"]["python"]
    assert d["exampleRequests"][0]["url"] == "http://localhost:8080/models/iris/v1/chat/completions"
    python = d["sdkExamples"]["python"]
    assert "from openai import OpenAI" in python
    assert "base_url='http://localhost:8080/models/iris/v1'" in python and f"api_key={KEY!r}" in python
    compile(python, "<example>", "exec")
    curl = shlex.split(d["sdkExamples"]["curl"].replace("\\\n", " "))
    assert curl[3] == "http://localhost:8080/models/iris/v1/chat/completions"
    assert f"Authorization: Bearer {KEY}" in curl


def test_openai_embedding_publications_show_embeddings() -> None:
    d = docs(model_type="openai", openai_endpoint="embeddings")
    assert d["exampleRequests"][0]["url"].endswith("/v1/embeddings")
    assert json.loads(d["exampleRequests"][0]["body"])["input"]
    assert "client.embeddings.create(" in d["sdkExamples"]["python"]
    compile(d["sdkExamples"]["python"], "<example>", "exec")
