"""The engine interface: what the OpenAI endpoints need from whatever runs a language model.

An engine takes a tokenised prompt and sampling settings and produces, per choice, text deltas and
then a finish event, delivered on the asyncio loop that submitted the request. Any engine (the
transformers one here; a vLLM one would fit the same shape) must cap each choice at
``Sampling.max_new_tokens`` generated tokens: the token budget a gateway reserved depends on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from inferbox.server.llm.embeddings import Embedder

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to generate. ``temperature == 0`` is greedy; ``seed`` makes sampling repeatable."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1


@dataclass(frozen=True, slots=True)
class Delta:
    """New text of choice ``index`` (may be empty when a token produced no printable text yet)."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Choice ``index`` is complete after ``tokens`` generated tokens."""

    index: int
    reason: FinishReason
    tokens: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The engine failed while generating; the request cannot complete."""

    message: str


Event = Delta | Finished | Failed


@dataclass(eq=False)
class Generation:
    """One submitted request: iterate :meth:`events` on the submitting loop; :meth:`cancel` stops it
    (the engine drops it at its next step, so a gone client does not keep the model busy)."""

    loop: asyncio.AbstractEventLoop
    choices: int
    _queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def push(self, event: Event) -> None:
        """Called by the engine, from any thread."""
        self.loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def cancel(self) -> None:
        self.cancelled = True

    async def events(self) -> AsyncIterator[Event]:
        """Every event until all choices finished (or the engine failed)."""
        open_choices = self.choices
        while open_choices:
            event = await self._queue.get()
            yield event
            if isinstance(event, Finished):
                open_choices -= 1
            elif isinstance(event, Failed):
                return


class TextEngine(Protocol):
    """Runs generations for one causal language model."""

    #: The longest prompt + completion the model takes (its ``max_position_embeddings``).
    context_length: int

    def submit(self, prompt: list[int], sampling: Sampling) -> Generation:
        """Start generating ``sampling.n`` choices for ``prompt``; call on the event loop."""

    def close(self) -> None:
        """Stop the engine; requests still running get a :class:`Failed` event."""


@dataclass(frozen=True, slots=True)
class ServedLanguageModel:
    """What the OpenAI endpoints use of a loaded language model: the tokenizer that counts ``usage``,
    the context length (``max_model_len``), and the engine (text generation) or the embedder."""

    task: str
    tokenizer: Any
    context_length: int
    engine: TextEngine | None = None
    embedder: Embedder | None = None
