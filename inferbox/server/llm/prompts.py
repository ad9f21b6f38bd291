"""Prompts from chat messages: the tokenizer's chat template when it has one, else a plain join."""

from __future__ import annotations

from typing import Any


def chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text for ``messages`` (``role``/``content`` pairs), ending where the assistant's
    reply begins.

    Without a chat template (base models like GPT-2) the messages are joined as ``role: content``
    lines followed by ``assistant:``, the convention KServe's huggingface server also falls back to.
    """
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(prompt)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def encode(tokenizer: Any, text: str, *, chat: bool) -> list[int]:
    """Token ids of ``text``. A chat template already writes the special tokens it wants, so they are
    not added a second time."""
    ids = tokenizer(text, add_special_tokens=not chat)["input_ids"]
    return [int(i) for i in ids]
