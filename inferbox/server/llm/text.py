"""Turning generated token ids into text deltas, stopping at stop strings.

Tokens do not map one to one onto characters: a byte-level BPE token may hold half of a UTF-8
character, and a stop string may span tokens. So the whole completion is decoded after each token,
and only text that can no longer change is released: a trailing replacement character (an
incomplete character) and any tail that could be the start of a stop string are held back until the
next token settles them.
"""

from __future__ import annotations

from typing import Protocol

_INCOMPLETE = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class TextStream:
    """The text of one choice, fed a token at a time."""

    def __init__(self, tokenizer: Decoder, stop: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._ids: list[int] = []
        self._sent = 0  # characters already released
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a generated token; return the text it releases. Sets :attr:`stopped` when the text now
        contains a stop string (the text released ends just before it)."""
        self._ids.append(token)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            return self._release(text, max(cut, self._sent))
        safe = len(text.rstrip(_INCOMPLETE))
        safe -= self._held_for_stop(text[:safe])
        return self._release(text, max(safe, self._sent))

    def flush(self) -> str:
        """The text held back, once generation ended for another reason (length, end of sequence)."""
        if self.stopped:
            return ""
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        return self._release(text, len(text))

    def _release(self, text: str, upto: int) -> str:
        delta = text[self._sent : upto]
        self._sent = upto
        return delta

    def _first_stop(self, text: str) -> int | None:
        # Only the part not yet released can hold a new stop string (plus its overlap with the end).
        found = [i for s in self._stop if (i := text.find(s, max(0, self._sent - len(s) + 1))) != -1]
        return min(found) if found else None

    def _held_for_stop(self, text: str) -> int:
        """How many trailing characters of ``text`` might be the beginning of a stop string."""
        held = 0
        for s in self._stop:
            for size in range(min(len(s) - 1, len(text)), held, -1):
                if text.endswith(s[:size]):
                    held = size
                    break
        return held
