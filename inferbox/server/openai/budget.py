"""How many tokens each choice may generate: the request's own limit, bounded by the model's context
and by the token budget a gateway reserved for the request.

The gateway sends ``x-inferbox-max-tokens: N``, the total it reserved: prompt tokens plus completion
tokens summed over every choice (OpenAI counts the prompt once whatever ``n`` is). Each of the ``k``
choices may then generate ``(N - prompt) // k`` tokens, so ``usage.total_tokens <= N`` holds whatever
the choices do; a prompt that alone exceeds ``N`` is refused before anything is generated.
"""

from __future__ import annotations

from inferbox.server.openai.errors import OpenAIError

BUDGET_HEADER = b"x-inferbox-max-tokens"
MAX_BUDGET = 2**40


def budget_from(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The reserved budget the gateway sent, if any; a malformed value is a 400."""
    for key, value in headers:
        if key == BUDGET_HEADER:
            if not value.isdigit() or not 0 <= int(value) <= MAX_BUDGET:
                raise OpenAIError(
                    400,
                    f"{BUDGET_HEADER.decode()} must be an integer from 0 to {MAX_BUDGET}",
                    code="invalid_token_budget",
                )
            return int(value)
    return None


def completion_cap(
    prompts: list[int], choices_per_prompt: int, requested: int | None, context: int, budget: int | None
) -> int:
    """The most tokens each choice may generate, or a 400 when the prompts cannot be served at all.

    ``prompts`` are the prompts' token counts; there are ``choices_per_prompt`` choices for each.
    """
    total_prompt = sum(prompts)
    if budget is not None and total_prompt > budget:
        raise OpenAIError(
            400,
            f"the prompt has {total_prompt} tokens, more than the {budget} tokens reserved for this request",
            code="token_budget_exceeded",
        )
    longest = max(prompts)
    if longest >= context:
        raise OpenAIError(
            400,
            f"this model's maximum context length is {context} tokens; the prompt has {longest}",
            param="messages",
            code="context_length_exceeded",
        )
    room = context - longest
    if requested is not None and requested > room:
        raise OpenAIError(
            400,
            f"this model's maximum context length is {context} tokens; the prompt has {longest} "
            f"and {requested} more were requested (at most {room})",
            param="max_tokens",
            code="context_length_exceeded",
        )
    cap = room if requested is None else requested
    if budget is not None:
        cap = min(cap, (budget - total_prompt) // (choices_per_prompt * len(prompts)))
    return cap
