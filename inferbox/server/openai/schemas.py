"""Request bodies of the OpenAI endpoints, with the ranges OpenAI documents.

Fields OpenAI defines but the replica does not act on (``user``, ``logit_bias``, penalties, ...) are
accepted, range-checked where OpenAI gives a range, and ignored, so existing clients work unchanged;
fields that would change the answer in a way the replica cannot honour (``logprobs``, ``tools``,
``response_format`` other than text, ``echo``, ``best_of`` > n) are refused with a 400 rather than
silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16
MAX_STOP = 4
MAX_STOP_CHARS = 200
MAX_MESSAGES = 1000
MAX_INPUTS = 2048
#: Bounds of a seed: a signed 64-bit integer, as torch takes it.
SEED_RANGE = (-(2**63), 2**63 - 1)

Int64 = Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False)


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """What chat and text completions share."""

    model: Annotated[str, Field(min_length=1, max_length=256)]
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Int64 | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    logprobs: Literal[False] | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        for stop in stops:
            if not stop or len(stop) > MAX_STOP_CHARS:
                raise ValueError(f"stop sequences must have 1 to {MAX_STOP_CHARS} characters")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class TextPart(_Body):
    type: Literal["text"]
    text: Annotated[str, Field(max_length=1_000_000)]


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=1_000_000)] | list[TextPart] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: Annotated[list[Any], Field(max_length=0)] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "text") != "text":
            raise ValueError("only response_format {'type': 'text'} is supported")
        return value

    def limit(self) -> int | None:
        """The completion limit: ``max_completion_tokens`` (the newer name) wins over ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


Prompt = (
    Annotated[str, Field(max_length=1_000_000)]
    | Annotated[list[Annotated[str, Field(max_length=1_000_000)]], Field(min_length=1, max_length=MAX_INPUTS)]
    | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=1_000_000)]
    | Annotated[
        list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]],
        Field(min_length=1, max_length=MAX_INPUTS),
    ]
)


class CompletionRequest(_Sampling):
    prompt: Prompt
    max_tokens: Annotated[int, Field(ge=0)] | None = 16  # OpenAI's default for this legacy endpoint
    echo: Literal[False] | None = None
    best_of: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    suffix: None = None
    logprobs: Literal[0] | None = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _best_of(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of other than n is not supported")
        return self


class EmbeddingRequest(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: Prompt
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
