"""The answers of chat and text completions, whole or as server-sent-event chunks, in OpenAI's shapes.

A :class:`Completion` collects the engine's events for every choice of a request; the same object
renders the final body (non-streaming) and the chunks of a stream, so both count ``usage`` the same
way: ``prompt_tokens`` by the tokenizer, once per prompt; ``completion_tokens`` the tokens generated,
summed over the choices.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from inferbox.server.llm.engine import Delta, Event, Failed, Finished
from inferbox.server.protocol import dumps

Kind = Literal["chat", "text"]
DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


@dataclass
class Completion:
    kind: Kind
    model: str
    prompt_tokens: int
    choices: int
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))
    texts: dict[int, list[str]] = field(default_factory=dict)
    finish: dict[int, Finished] = field(default_factory=dict)
    failure: str | None = None

    @property
    def object_id(self) -> str:
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.id

    def record(self, event: Event) -> None:
        if isinstance(event, Delta):
            self.texts.setdefault(event.index, []).append(event.text)
        elif isinstance(event, Finished):
            self.finish[event.index] = event
        elif isinstance(event, Failed):
            self.failure = event.message

    def usage(self) -> dict[str, int]:
        completion = sum(f.tokens for f in self.finish.values())
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    # -- whole answers ---------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        choices = []
        for index in range(self.choices):
            text = "".join(self.texts.get(index, []))
            reason = self.finish[index].reason
            if self.kind == "chat":
                choices.append(
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": reason,
                    }
                )
            else:
                choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": reason})
        return {
            "id": self.object_id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "system_fingerprint": None,
        }

    # -- stream chunks ---------------------------------------------------------------------------

    def _chunk(self, choices: list[dict[str, Any]], with_usage: bool) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.object_id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "system_fingerprint": None,
        }
        if with_usage:
            chunk["usage"] = None  # OpenAI sends null on every chunk but the last
        return sse(chunk)

    def opening(self, with_usage: bool) -> list[bytes]:
        """Chat streams open each choice with the assistant's role."""
        if self.kind != "chat":
            return []
        return [
            self._chunk(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                with_usage,
            )
            for i in range(self.choices)
        ]

    def chunk_for(self, event: Event, with_usage: bool) -> bytes | None:
        """The chunk that carries ``event`` (recorded first), or None when it carries nothing."""
        self.record(event)
        if isinstance(event, Delta):
            if not event.text:
                return None
            if self.kind == "chat":
                choice: dict[str, Any] = {"index": event.index, "delta": {"content": event.text}}
            else:
                choice = {"index": event.index, "text": event.text}
            return self._chunk([{**choice, "logprobs": None, "finish_reason": None}], with_usage)
        if isinstance(event, Finished):
            if self.kind == "chat":
                choice = {"index": event.index, "delta": {}}
            else:
                choice = {"index": event.index, "text": ""}
            return self._chunk([{**choice, "logprobs": None, "finish_reason": event.reason}], with_usage)
        error = {"message": event.message, "type": "server_error", "param": None, "code": None}
        return sse({"error": error})

    def closing(self, with_usage: bool) -> list[bytes]:
        """The usage chunk (when asked for) and the end marker."""
        if not with_usage or self.failure is not None:
            return [DONE]
        last: dict[str, Any] = {
            "id": self.object_id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
            "system_fingerprint": None,
        }
        return [sse(last), DONE]
