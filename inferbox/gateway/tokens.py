"""What an OpenAI request can cost at most, in tokens, worked out at the gateway without a tokenizer.

The gateway reserves this bound before it forwards a call and tells the replica the amount it got (the
`x-inferbox-max-tokens` header), and the replica, which has the tokenizer, keeps prompt plus completion
within it. So the budget's exactness rests on the replica's cap; the bound only decides how much is
held while the call runs. Too high and concurrent callers are granted less for a moment (the unused part
comes back when the call ends); too low and a call ends early with `finish_reason: "length"`.

The bound: a token covers at least one byte of the text (byte-level BPE and byte-fallback tokenizers
alike), so the UTF-8 length of the strings a prompt is made of bounds its tokens (a token id in a list
is one), plus a few for the template's special tokens per message or input and the request; then `n`
completions of `max_tokens` (or of the context length when the caller set none), and never more than
`n` full contexts per prompt. Tools and response formats a template renders count with the prompt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BUDGET_HEADER = "x-inferbox-max-tokens"
# The template's tokens around each message (role markers, separators) or around each input (BOS, EOS).
PER_MESSAGE_TOKENS = 8
PER_REQUEST_TOKENS = 16
# When the replica does not say its context length, what one completion may run to.
DEFAULT_CONTEXT = 4096
MAX_CHOICES = 128
MAX_TOKENS = 10_000_000
CONTEXT_TTL_SECONDS = 60.0


class BadRequest(ValueError):
    """The body cannot be bounded: not JSON, or a number out of its range."""


class _Body(BaseModel):
    """The fields of a chat, completion or embedding body that decide its cost. Everything else is the
    replica's to check; here only what the bound reads must make sense."""

    model_config = ConfigDict(extra="ignore")

    messages: list[Any] | None = None
    prompt: Any = None
    input: Any = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    max_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class Cost:
    """A parsed request: its most tokens, whether it streams, and whether the caller asked for usage
    in the stream (the gateway always does; it strips the usage chunk when the caller did not)."""

    bound: int
    stream: bool
    wants_stream_usage: bool
    body: dict[str, Any]


def _text_bytes(value: Any) -> int:
    """The tokens the strings (and token ids) inside `value` can make at most."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_bytes(k) + _text_bytes(v) for k, v in value.items())
    return 0


def _count(value: Any) -> int:
    """How many prompts (or inputs) a `prompt`/`input` holds: a string or a list of token ids is one."""
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        return len(value)
    return 1


def cost(action: str, raw: bytes, context: int | None) -> Cost:
    """The bound for `raw` sent to `action` ("chat/completions", "completions", "embeddings")."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("The body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object")
    try:
        body = _Body.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"Field '{where}': {first['msg']}") from None
    per_context = context or DEFAULT_CONTEXT
    if action == "embeddings":
        inputs = _count(body.input)
        bound = _text_bytes(body.input) + PER_REQUEST_TOKENS * inputs
        return Cost(min(bound, inputs * per_context), False, False, data)
    rendered = sum(_text_bytes(data.get(k)) for k in ("tools", "functions", "response_format"))
    if action == "chat/completions":
        prompts = 1
        messages = body.messages or []
        prompt_bound = (
            _text_bytes(messages) + PER_MESSAGE_TOKENS * len(messages) + PER_REQUEST_TOKENS + rendered
        )
    else:
        prompts = _count(body.prompt)
        prompt_bound = _text_bytes(body.prompt) + PER_REQUEST_TOKENS * prompts + rendered
    limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    completion = limit if limit is not None else per_context
    bound = min(prompt_bound + prompts * body.n * completion, prompts * body.n * per_context)
    wants_usage = bool((body.stream_options or {}).get("include_usage"))
    return Cost(bound, body.stream, wants_usage, data)


def with_stream_usage(body: dict[str, Any]) -> bytes:
    """The body, asking the replica for usage in the stream's last chunk."""
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    return orjson.dumps({**body, "stream_options": options})


def total_tokens(usage: Any) -> int | None:
    """`usage.total_tokens` (or prompt + completion) of an answer, None when it has none."""
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if total is None:
        total = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
    try:
        return max(0, int(total))
    except (TypeError, ValueError):
        return None


class ContextLengths:
    """Each published model's context length, read from its replica's `GET /openai/v1/models`
    (`max_model_len`, as vLLM and inferbox's model server say it) and kept for a minute."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, str, str], tuple[float, int | None]] = {}

    def get(self, key: tuple[int, str, str]) -> tuple[bool, int | None]:
        """(fresh, length): `fresh` False when it is time to ask again."""
        found = self._known.get(key)
        if found is None or found[0] < time.monotonic():
            return False, found[1] if found else None
        return True, found[1]

    def learn(self, key: tuple[int, str, str], models_body: bytes) -> int | None:
        length: int | None = None
        try:
            cards = orjson.loads(models_body).get("data") or []
            values = [c.get("max_model_len") for c in cards if isinstance(c, dict)]
            lengths = [v for v in values if isinstance(v, int) and v > 0]
            length = max(lengths) if lengths else None
        except (orjson.JSONDecodeError, AttributeError):
            length = None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = (time.monotonic() + CONTEXT_TTL_SECONDS, length)
        return length
