"""`POST /api/models/{name}/chat`: an OpenAI chat completion with a Hugging Face text-generation model,
for the console's chat box, called with the signed-in user's token and scoped like predict (another
tenant's model is 404).

The console cannot call the gateway (its CSP allows only the control plane, and the gateway wants an
API key), so this route carries the call to a replica's `/openai/v1/chat/completions` and passes the
answer through: with `"stream": true` as server-sent events, each chunk sent on as the replica sends it
(never gathered first); otherwise the completion object as the replica answered it.

Errors are in the spec's shape (`{"error", "details"}`) like every `/api` route, also when the replica
refused the call: the replica's OpenAI error message becomes the details. A stream that breaks off after
its head was sent can only end early: the browser sees no `[DONE]`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Request
from pydantic import Field
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from inferbox.api.bodies import validated_body
from inferbox.api.deps import ModelName, Namespace, PlatformDep, PrincipalDep
from inferbox.api.errors import ApiError, bad_request
from inferbox.api.models import load_model
from inferbox.api.openapi import json_body
from inferbox.blocking import in_thread
from inferbox.control.chat import ChatAnswer
from inferbox.control.model_rows import ModelRecord
from inferbox.control.publishing import model_task
from inferbox.runtime.client import REPLICA_ERRORS
from inferbox.server.openai.schemas import ChatCompletionRequest, ChatMessage, TextPart

log = logging.getLogger("inferbox.api")

router = APIRouter(tags=["models"])

#: The most tokens one console chat answer may ask for (the model's context bounds it further).
MAX_CHAT_TOKENS = 4096
# A conversation typed in the console: its documented bounds stay within the route's 1 MiB body limit
# (api/middleware.py) for any one message, so that a body the schema refuses gets a 400 naming the
# field rather than a 413.
MAX_CHAT_MESSAGES = 256
MAX_CHAT_TEXT = 32 * 1024
MAX_CHAT_PARTS = 16


class ChatText(TextPart):
    text: Annotated[str, Field(max_length=MAX_CHAT_TEXT)]


class ChatTurn(ChatMessage):
    content: (
        Annotated[str, Field(max_length=MAX_CHAT_TEXT)]
        | Annotated[list[ChatText], Field(max_length=MAX_CHAT_PARTS)]
        | None
    ) = None  # type: ignore[assignment]


class ChatRequest(ChatCompletionRequest):
    """OpenAI's chat completions body. `model` may be left out: the path names the model."""

    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None  # type: ignore[assignment]
    messages: Annotated[  # type: ignore[assignment]
        list[ChatTurn], Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    ]
    max_tokens: Annotated[int, Field(ge=1, le=MAX_CHAT_TOKENS)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_CHAT_TOKENS)] | None = None


def _check_generates(record: ModelRecord, task: str | None) -> None:
    """Only a Hugging Face text-generation model chats. A task that cannot be read here (remote
    storage) is left to the replica, which refuses what it cannot generate with."""
    if record.config.framework != "huggingface":
        raise bad_request(
            f"Model '{record.name}' is a {record.config.framework} model: chat needs a Hugging Face "
            "text-generation model (use predict for this one)",
            "Not a language model",
        )
    if task is not None and task != "text-generation":
        raise bad_request(
            f"Model '{record.name}' does '{task}': chat needs a text-generation model",
            "Not a language model",
        )


def _replica_error(status: int, content: bytes) -> ApiError:
    """The replica's refusal (OpenAI's `{"error": {"message"}}`) in the spec's shape."""
    try:
        error = orjson.loads(content).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    details = str(message) if message else content.decode(errors="replace")[:500]
    if status == 400:
        return ApiError(400, "Invalid chat request", details)
    if status == 404:
        return ApiError(404, "Model not found", details)
    return ApiError(502, "Chat failed", f"The model answered {status}: {details}")


async def _pass_on(answer: ChatAnswer) -> AsyncIterator[bytes]:
    """The stream's chunks as they come; a replica that breaks off mid-stream ends it early. The
    replica is let go at the end, or when the browser leaves (the generator is then cancelled)."""
    try:
        async for chunk in answer.chunks():
            yield chunk
    except REPLICA_ERRORS as exc:
        log.warning("chat stream from the model broke off: %s", exc)
    finally:
        await answer.close()


@router.post(
    "/api/models/{name}/chat",
    summary="Chat with a text-generation model (OpenAI chat completions, streamed with stream: true)",
    description="Takes OpenAI's chat completions body and answers as OpenAI does: a completion object, or "
    "with `stream: true` server-sent events (`data: {chunk}` ... `data: [DONE]`), each chunk sent as the "
    "model generates it; `stream_options.include_usage` adds a last chunk with the usage. Only for Hugging "
    "Face text-generation models (others: 400). Errors are in the spec's shape.",
    openapi_extra={
        **json_body(ChatRequest),
        "responses": {
            "200": {
                "description": "The completion, or its stream of server-sent events",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            }
        },
    },
)
async def chat(
    name: ModelName,
    request: Request,
    principal: PrincipalDep,
    platform: PlatformDep,
    namespace: Namespace = None,
) -> Response:
    body = await validated_body(request, ChatRequest)
    record = await load_model(platform, principal, name, namespace)
    _check_generates(record, await in_thread(model_task, record))
    upstream = body.model_dump(exclude_unset=True)
    upstream["model"] = record.name
    answer = await platform.predictions.chat.open(record, orjson.dumps(upstream))
    if answer.streamed:
        # The background close covers a stream the server never started to send (closing twice is
        # harmless).
        return StreamingResponse(
            _pass_on(answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(answer.close),
        )
    try:
        content = await answer.read()
    finally:
        await answer.close()
    if answer.status >= 400:
        raise _replica_error(answer.status, content)
    return Response(content, status_code=answer.status, media_type="application/json")
