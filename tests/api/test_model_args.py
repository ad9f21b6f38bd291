"""A model's `args` (`{"task": ...}`, huggingface only) through the API: refused when wrong, stored,
shown, handed to the replica as `--task`, and honoured by the publication's default `modelType`.

The language model is a tiny GPT-2 built in the test whose `config.json` names no architecture, so
nothing but `args.task` tells the model server what to serve it as."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from support import RunningServer, wait_for, wait_ready

TASKS = "text-generation, feature-extraction, text-classification"


@pytest.fixture(scope="module")
def srv(module_servers) -> RunningServer:  # type: ignore[no-untyped-def]
    server: RunningServer = module_servers()
    server.platform.tenants.create("tenant-a")
    return server


@pytest.fixture(scope="module")
def taskless_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 with `architectures` taken out of its config: its task cannot be read from it."""
    from llm_models import build_tiny_gpt2

    from inferbox.server.frameworks.huggingface import task_from_config

    directory = build_tiny_gpt2(tmp_path_factory.mktemp("taskless") / "gpt2")
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("architectures", None)
    config_file.write_text(json.dumps(config))
    assert task_from_config(directory) is None
    return directory


def hf_body(name: str, storage: Path, **fields: Any) -> dict[str, Any]:
    return {"name": name, "framework": "huggingface", "storageUri": f"file://{storage}", **fields}


@pytest.mark.parametrize(
    ("args", "framework", "fragment"),
    [
        ({"task": "summarization"}, "huggingface", f"Field 'args.task' must be one of {TASKS}"),
        ({"task": 7}, "huggingface", f"Field 'args.task' must be one of {TASKS}"),
        ({"task": "text-generation", "dtype": "float16"}, "huggingface", "Field 'args.dtype' is not allowed"),
        ("text-generation", "huggingface", "Field 'args' must be an object"),
        (["--task=text-generation"], "huggingface", "Field 'args' must be an object"),
        (
            {"task": "text-classification"},
            "sklearn",
            "Field 'args' is only for framework huggingface (got 'sklearn')",
        ),
    ],
)
def test_bad_args_on_create_are_400_and_leave_nothing_behind(
    srv: RunningServer, tmp_path: Path, args: Any, framework: str, fragment: str
) -> None:
    body = {"name": "refused", "framework": framework, "storageUri": str(tmp_path), "args": args}
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models", json=body)
        assert r.status_code == 400, r.text
        assert r.json() == {"error": "Invalid request format", "details": fragment}
        assert c.get("/api/models/refused").status_code == 404


def test_a_sklearn_model_takes_no_task_on_update_and_keeps_its_config(
    srv: RunningServer, sklearn_dir: Path
) -> None:
    with srv.tenant("tenant-a") as c:
        body = {"name": "iris", "framework": "sklearn", "storageUri": str(sklearn_dir), "minReplicas": 0}
        created = c.post("/api/models", json=body)
        assert created.status_code == 201, created.text
        assert "args" not in created.json()["config"]  # no options: the spec's shape exactly
        for args, fragment in [
            ({"task": "text-generation"}, "Field 'args' is only for framework huggingface (got 'sklearn')"),
            ({"task": "translation"}, f"Field 'args.task' must be one of {TASKS}"),
            ({"tsak": "text-generation"}, "Field 'args.tsak' is not allowed"),
        ]:
            r = c.put("/api/models/iris", json={"args": args})
            assert r.status_code == 400, r.text
            assert r.json()["details"] == fragment
        # An empty `args` asks for no option, which any framework may have.
        assert c.put("/api/models/iris", json={"args": {}}).status_code == 200
        model = c.get("/api/models/iris").json()
        assert "args" not in model
        assert model["predictor"] == {"framework": "sklearn", "storageUri": str(sklearn_dir)}
        assert c.delete("/api/models/iris").status_code == 200


def openai_client(published: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{published['externalUrl']}/v1", api_key=published["apiKey"], max_retries=0
    )


@pytest.mark.llm
def test_without_args_the_taskless_model_fails_to_load_and_says_to_pass_a_task(
    srv: RunningServer, taskless_gpt2: Path
) -> None:
    with srv.tenant("tenant-a") as c:
        assert c.post("/api/models", json=hf_body("taskless", taskless_gpt2)).status_code == 201

        def failed() -> dict[str, Any] | None:
            body: dict[str, Any] = c.get("/api/models/taskless").json()
            return body if body["status"] == "FailedToLoad" else None

        model = wait_for(failed, timeout=120, interval=0.2)
        assert "pass --task" in model["statusDetails"]["error"]
        assert c.delete("/api/models/taskless").status_code == 200


@pytest.mark.llm
def test_told_text_generation_it_chats_at_its_openai_publication(
    srv: RunningServer, taskless_gpt2: Path
) -> None:
    args = {"task": "text-generation"}
    with srv.tenant("tenant-a") as c:
        created = c.post("/api/models", json=hf_body("writer", taskless_gpt2, args=args))
        assert created.status_code == 201, created.text
        assert created.json()["config"]["args"] == args
        model = wait_ready(c, "writer", timeout=120)
        assert model["args"] == args
        assert [m.get("args") for m in c.get("/api/models").json()["models"] if m["name"] == "writer"] == [
            args
        ]
        r = c.post("/api/models/writer/publish", json={"config": {}})
    assert r.status_code == 201, r.text
    with srv.admin() as admin:
        shown = admin.post("/api/admin/kubectl", json={"command": "get isvc writer -n tenant-a -o json"})
    assert shown.status_code == 200, shown.text
    isvc = json.loads(shown.json()["result"])
    assert isvc["spec"]["predictor"]["model"]["args"] == ["--task=text-generation"]  # as the replica runs
    published = r.json()["publishedModel"]
    assert published["modelType"] == "openai"  # left out: args.task makes it a language model
    assert published["documentation"]["exampleRequests"][0]["url"].endswith("/v1/chat/completions")
    chat = openai_client(published).chat.completions.create(
        model="writer", messages=[{"role": "user", "content": "hello world"}], max_tokens=4
    )
    assert chat.object == "chat.completion"
    assert chat.usage is not None and 0 < chat.usage.completion_tokens <= 4
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens


@pytest.mark.llm
def test_told_feature_extraction_it_embeds_and_an_update_of_the_task_rolls_it(
    srv: RunningServer, taskless_gpt2: Path
) -> None:
    with srv.tenant("tenant-a") as c:
        body = hf_body("embedder", taskless_gpt2, args={"task": "feature-extraction"})
        assert c.post("/api/models", json=body).status_code == 201
        wait_ready(c, "embedder", timeout=120)
        r = c.post("/api/models/embedder/publish", json={"config": {"modelType": ""}})
    assert r.status_code == 201, r.text
    published = r.json()["publishedModel"]
    assert published["modelType"] == "openai"  # "" asks for the default, as left out does
    assert published["documentation"]["exampleRequests"][0]["url"].endswith("/v1/embeddings")
    client = openai_client(published)
    embedded = client.embeddings.create(model="embedder", input=["hello world", "the lazy dog"])
    assert [len(e.embedding) for e in embedded.data] == [32, 32]  # the tiny model's n_embd
    assert embedded.usage.prompt_tokens > 0
    with pytest.raises(openai.APIStatusError):  # an embedding model does not chat
        client.chat.completions.create(model="embedder", messages=[{"role": "user", "content": "hi"}])

    with srv.tenant("tenant-a") as c:
        r = c.put("/api/models/embedder", json={"args": {"task": "text-generation"}})
        assert r.status_code == 200, r.text
        assert r.json()["model"]["args"] == {"task": "text-generation"}

    def chats() -> bool:
        try:
            client.chat.completions.create(
                model="embedder", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        except openai.APIStatusError:
            return False
        return True

    # The replicas are rolled to the new command line: the same URL now generates.
    wait_for(chats, timeout=120, interval=0.5)
    with pytest.raises(openai.APIStatusError):
        client.embeddings.create(model="embedder", input=["hello world"])
