"""The pieces of the OpenAI endpoints that need no model: releasing text around stop strings, the
completion cap from the context and the gateway's budget, the budget header, the plain chat join."""

from __future__ import annotations

import pytest

from inferbox.server.llm.prompts import chat_prompt
from inferbox.server.llm.text import TextStream
from inferbox.server.openai.budget import budget_from, completion_cap
from inferbox.server.openai.errors import OpenAIError


class CharTokenizer:
    """Token i is chr(i); 0xFFFD stands for half a character (what byte-level BPE can produce)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def feed(stream: TextStream, text: str) -> list[str]:
    return [stream.push(ord(c)) for c in text]


def test_text_is_released_as_it_settles() -> None:
    stream = TextStream(CharTokenizer(), ())
    assert feed(stream, "abc") == ["a", "b", "c"]
    assert stream.push(0xFFFD) == ""  # an incomplete character waits for the next token
    assert stream.flush() == "\ufffd"


def test_a_stop_string_across_tokens_is_held_then_cut() -> None:
    stream = TextStream(CharTokenizer(), ("END",))
    released = feed(stream, "abEN")
    assert "".join(released) == "ab"  # "EN" may start "END"
    assert stream.push(ord("D")) == ""
    assert stream.stopped
    assert stream.flush() == ""


def test_a_false_start_of_a_stop_string_is_released() -> None:
    stream = TextStream(CharTokenizer(), ("END",))
    assert "".join(feed(stream, "aENx")) == "aENx"
    assert not stream.stopped


def test_completion_cap() -> None:
    assert completion_cap([10], 1, None, 128, None) == 118
    assert completion_cap([10], 1, 20, 128, None) == 20
    assert completion_cap([10], 1, 100, 128, 30) == 20
    assert completion_cap([10], 3, 100, 128, 30) == 6  # 10 + 3 * 6 <= 30
    assert completion_cap([10, 5], 2, 100, 128, 35) == 5  # 15 + 4 * 5 <= 35
    assert completion_cap([10], 1, None, 128, 10) == 0  # the prompt fits exactly: nothing more


@pytest.mark.parametrize(
    ("prompts", "requested", "budget", "code"),
    [
        ([11], None, 10, "token_budget_exceeded"),
        ([128], None, None, "context_length_exceeded"),
        ([100], 29, None, "context_length_exceeded"),
    ],
)
def test_completion_cap_refusals(
    prompts: list[int], requested: int | None, budget: int | None, code: str
) -> None:
    with pytest.raises(OpenAIError) as caught:
        completion_cap(prompts, 1, requested, 128, budget)
    assert caught.value.status == 400
    assert caught.value.code == code


def test_budget_header() -> None:
    assert budget_from([]) is None
    assert budget_from([(b"x-inferbox-max-tokens", b"42")]) == 42
    for bad in (b"-1", b"4.2", b"", b"9" * 20):
        with pytest.raises(OpenAIError):
            budget_from([(b"x-inferbox-max-tokens", bad)])


def test_chat_without_a_template_joins_the_messages() -> None:
    class Plain:
        chat_template = None

    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert chat_prompt(Plain(), messages) == "system: be brief\nuser: hi\nassistant:"
