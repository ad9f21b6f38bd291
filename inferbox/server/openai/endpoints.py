"""The OpenAI endpoints: ``POST /openai/v1/chat/completions``, ``/completions``, ``/embeddings`` and
``GET /openai/v1/models``, the paths of KServe's huggingface server.

The replica serves one model, so a request's ``model`` field selects nothing: any name is accepted
(a gateway publishing the model may call it something else) and answers carry the served name.
Every failure, including those of the shared plumbing (body too large, model still loading), answers
in OpenAI's error shape, which is what clients on these paths parse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from inferbox.server.errors import InferenceError
from inferbox.server.llm.engine import Event, Failed, Generation, Sampling, ServedLanguageModel
from inferbox.server.llm.prompts import chat_prompt, encode
from inferbox.server.openai.budget import budget_from, completion_cap
from inferbox.server.openai.errors import OpenAIError, from_validation
from inferbox.server.openai.responses import Completion, Kind
from inferbox.server.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from inferbox.server.protocol import dumps
from inferbox.server.rest.endpoints import (
    JSON,
    Handler,
    ModelHost,
    Receive,
    Response,
    Route,
    Scope,
    Streamed,
    read_body,
    run_framework,
)

PREFIX = "/openai/v1"
SSE = b"text/event-stream"
B = TypeVar("B", bound=BaseModel)


def _openai_errors(handler: Handler) -> Handler:
    """Answer every failure of ``handler`` in OpenAI's error shape."""

    async def wrapped(scope: Scope, receive: Receive) -> Response | Streamed:
        try:
            return await handler(scope, receive)
        except OpenAIError as exc:
            return exc.response()
        except InferenceError as exc:
            code = "model_not_ready" if exc.status == 503 else None
            return OpenAIError(exc.status, exc.message, code=code).response()

    return wrapped


class OpenAIEndpoints:
    def __init__(self, host: ModelHost) -> None:
        self.host = host

    def routes(self) -> dict[str, Route]:
        def route(endpoint: str, method: str, handler: Handler, inference: bool) -> Route:
            return Route(endpoint, method, _openai_errors(handler), inference)

        return {
            f"{PREFIX}/models": route("openai_models", "GET", self.models, False),
            f"{PREFIX}/models/{self.host.name}": route("openai_model", "GET", self.model, False),
            f"{PREFIX}/chat/completions": route("openai_chat", "POST", self.chat, True),
            f"{PREFIX}/completions": route("openai_completions", "POST", self.completions, True),
            f"{PREFIX}/embeddings": route("openai_embeddings", "POST", self.embeddings, True),
        }

    # -- plumbing --------------------------------------------------------------------------------

    async def _language(self, task: str) -> ServedLanguageModel:
        model, _ = await self.host.serving_model()
        language = getattr(model, "language", None)
        if not isinstance(language, ServedLanguageModel) or language.task != task:
            what = "text generation" if task == "text-generation" else "embeddings"
            raise OpenAIError(
                404, f"model {self.host.name!r} does not serve {what}", param="model", code="model_not_found"
            )
        return language

    async def _body(self, scope: Scope, receive: Receive, schema: type[B]) -> B:
        raw = await read_body(scope, receive, self.host.max_body_bytes)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise OpenAIError(400, f"malformed JSON: {exc}", code="invalid_json") from None
        if not isinstance(payload, dict):
            raise OpenAIError(400, "the request body must be a JSON object", code="invalid_json")
        try:
            return schema.model_validate(payload)
        except ValidationError as exc:
            raise from_validation(exc) from None

    def _model_card(self, language: ServedLanguageModel | None) -> dict[str, Any]:
        card: dict[str, Any] = {"id": self.host.name, "object": "model", "created": 0, "owned_by": "inferbox"}
        if language is not None:
            card["max_model_len"] = language.context_length
        return card

    # -- models ----------------------------------------------------------------------------------

    async def models(self, scope: Scope, receive: Receive) -> Response:
        model, _ = self.host.ready_model()
        card = self._model_card(getattr(model, "language", None))
        return 200, dumps({"object": "list", "data": [card]}), JSON

    async def model(self, scope: Scope, receive: Receive) -> Response:
        model, _ = self.host.ready_model()
        return 200, dumps(self._model_card(getattr(model, "language", None))), JSON

    # -- completions -----------------------------------------------------------------------------

    async def chat(self, scope: Scope, receive: Receive) -> Response | Streamed:
        language = await self._language("text-generation")
        request = await self._body(scope, receive, ChatCompletionRequest)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        try:
            text = chat_prompt(language.tokenizer, messages)
        except Exception as exc:  # a template may raise on a conversation it does not accept
            raise OpenAIError(
                400, f"the chat template refused the messages: {exc}", param="messages"
            ) from None
        prompt = encode(
            language.tokenizer, text, chat=bool(getattr(language.tokenizer, "chat_template", None))
        )
        return await self._generate("chat", scope, receive, language, request, [prompt], request.limit())

    async def completions(self, scope: Scope, receive: Receive) -> Response | Streamed:
        language = await self._language("text-generation")
        request = await self._body(scope, receive, CompletionRequest)
        prompts = _token_lists(request.prompt, lambda s: encode(language.tokenizer, s, chat=False))
        vocabulary = len(language.tokenizer)
        if any(t >= vocabulary for p in prompts for t in p):
            raise OpenAIError(
                400, f"token ids must be below {vocabulary}", param="prompt", code="invalid_value"
            )
        if any(not p for p in prompts):
            raise OpenAIError(400, "a prompt must not be empty", param="prompt", code="invalid_value")
        return await self._generate("text", scope, receive, language, request, prompts, request.max_tokens)

    async def _generate(
        self,
        kind: Kind,
        scope: Scope,
        receive: Receive,
        language: ServedLanguageModel,
        request: ChatCompletionRequest | CompletionRequest,
        prompts: list[list[int]],
        limit: int | None,
    ) -> Response | Streamed:
        engine = language.engine
        assert engine is not None
        budget = budget_from(scope["headers"])
        cap = completion_cap([len(p) for p in prompts], request.n, limit, language.context_length, budget)
        sampling = Sampling(
            max_new_tokens=cap,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
            stop=request.stop_strings(),
            n=request.n,
        )
        completion = Completion(kind, self.host.name, sum(len(p) for p in prompts), request.n * len(prompts))
        generations = [engine.submit(p, sampling) for p in prompts]
        events = _merged(generations, request.n)
        if request.stream:
            with_usage = request.stream_options is not None and request.stream_options.include_usage
            return Streamed(
                200, SSE, _sse(completion, events, generations, with_usage), [(b"cache-control", b"no-cache")]
            )
        # A caller that hangs up stops its generation (streams are watched by the app as they send).
        gone = asyncio.Event()
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, generations, gone))
        try:
            async for event in events:
                completion.record(event)
        finally:
            watcher.cancel()
            for generation in generations:
                generation.cancel()
        if gone.is_set():
            raise InferenceError(499, "client disconnected")
        if completion.failure is not None:
            raise OpenAIError(500, f"generation failed: {completion.failure}")
        return 200, dumps(completion.body()), JSON

    # -- embeddings ------------------------------------------------------------------------------

    async def embeddings(self, scope: Scope, receive: Receive) -> Response:
        language = await self._language("feature-extraction")
        embedder = language.embedder
        assert embedder is not None
        request = await self._body(scope, receive, EmbeddingRequest)
        tokenizer = language.tokenizer
        if isinstance(request.input, str) or (request.input and isinstance(request.input[0], str)):
            texts = [request.input] if isinstance(request.input, str) else [str(s) for s in request.input]
            counts = [embedder.count(t) for t in texts]
        else:
            ids = _token_lists(request.input, lambda s: [])
            texts = [tokenizer.decode(i, skip_special_tokens=True) for i in ids]
            counts = [len(i) for i in ids]
        if request.dimensions is not None and request.dimensions != embedder.dimensions:
            raise OpenAIError(
                400, f"this model's embeddings have {embedder.dimensions} dimensions", param="dimensions"
            )
        budget = budget_from(scope["headers"])
        total = sum(counts)
        if budget is not None and total > budget:
            raise OpenAIError(
                400,
                f"the input has {total} tokens, more than the {budget} tokens reserved for this request",
                code="token_budget_exceeded",
            )
        if max(counts) > embedder.context_length:
            raise OpenAIError(
                400,
                f"this model's maximum context length is {embedder.context_length} tokens; "
                f"an input has {max(counts)}",
                param="input",
                code="context_length_exceeded",
            )
        model, batcher = await self.host.serving_model()
        outputs = await run_framework(model, batcher.predict(np.array(texts, dtype=object)))
        vectors = np.asarray(outputs[0], dtype=np.float32)
        data = []
        for i, vector in enumerate(vectors):
            if request.encoding_format == "base64":
                value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                value = vector.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = {"prompt_tokens": total, "total_tokens": total}
        return 200, dumps({"object": "list", "data": data, "model": self.host.name, "usage": usage}), JSON


async def _cancel_on_disconnect(receive: Receive, generations: list[Generation], gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()
    for generation in generations:
        generation.cancel()


def _token_lists(prompt: Any, encode_text: Callable[[str], list[int]]) -> list[list[int]]:
    """A prompt in any of OpenAI's four forms (string, strings, token ids, lists of token ids) as
    lists of token ids."""
    if isinstance(prompt, str):
        return [encode_text(prompt)]
    if isinstance(prompt[0], str):
        return [encode_text(p) for p in prompt]
    if isinstance(prompt[0], int):
        return [list(prompt)]
    return [list(p) for p in prompt]


async def _merged(generations: list[Generation], n: int) -> AsyncIterator[Event]:
    """The events of several generations (one per prompt) as one stream, choice indexes renumbered
    to ``prompt * n + choice`` as OpenAI numbers them."""
    if len(generations) == 1:
        async for event in generations[0].events():
            yield event
        return
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    async def pump(offset: int, generation: Generation) -> None:
        async for event in generation.events():
            if isinstance(event, Failed):
                await queue.put(event)
            else:
                await queue.put(type(event)(**{**_fields(event), "index": event.index + offset}))
        await queue.put(None)

    tasks = [asyncio.create_task(pump(i * n, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
                continue
            yield item
            if isinstance(item, Failed):
                return
    finally:
        for task in tasks:
            task.cancel()


def _fields(event: Any) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__slots__}


async def _sse(
    completion: Completion, events: AsyncIterator[Event], generations: list[Generation], with_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The chunks of a streamed completion; closing it early (the client left) cancels generation."""
    try:
        for chunk in completion.opening(with_usage):
            yield chunk
        async for event in events:
            data = completion.chunk_for(event, with_usage)
            if data is not None:
                yield data
        for chunk in completion.closing(with_usage):
            yield chunk
    finally:
        for generation in generations:
            generation.cancel()
        closer: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
