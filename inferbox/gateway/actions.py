"""What a call under a published path asks for: the protocol action, what it costs, where it goes.

A published model answers the whole of KServe's V1 and the Open Inference Protocol (V2) under its
`externalPath`, so that a standard client (kserve's `InferenceRESTClient`, `tritonclient.http`) pointed at
`externalUrl` works as it does against a model server. The path under `externalPath` is parsed here into
an `Action`: inference calls spend the request quota; metadata and health calls are authenticated but
free, and a health probe waits only briefly for a model scaled to zero (a probe wants an answer, not a
replica started for it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    INFERENCE = "inference"  # spends the request quota and is counted in usage
    METADATA = "metadata"  # authenticated, free
    PROBE = "probe"  # authenticated, free, and waits at most PROBE_WAIT_SECONDS for a replica


class Answer(Enum):
    """How the replica's answer reaches the caller."""

    AS_IS = "as-is"
    V1_LIVE = "v1-live"  # a 200 from the replica's liveness becomes KServe V1's {"status": "alive"}


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    method: str
    upstream: str  # the path on the replica
    answer: Answer = Answer.AS_IS
    # An OpenAI call that generates or embeds ("chat/completions", ...): metered in tokens (gateway/llm.py).
    endpoint: str | None = None


class NoAction(Exception):
    """The path names nothing this publication serves (a 404); `details` says what."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


# Names are the published model's, which are DNS labels; anything else in that place is another model.
_V1_MODEL = re.compile(r"^/v1/models/([^/:]+)(:predict)?$")
_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(/versions/[0-9]{1,9})?(/ready|/infer)?$")

_OPENAI_ENDPOINTS = ("chat/completions", "completions", "embeddings", "models")
# Under the published path, and under its /v1, where the `openai` client (base_url = externalUrl/v1) calls.
OPENAI_SUFFIXES = {
    f"{prefix}/{endpoint}": endpoint for prefix in ("", "/v1") for endpoint in _OPENAI_ENDPOINTS
}


class Actions:
    """The actions of one publication, by the path under its externalPath."""

    def __init__(self, model: str, model_type: str) -> None:
        self.model = model
        self.openai = model_type == "openai"
        self._fixed = {} if self.openai else _fixed(model)

    def parse(self, rest: str) -> Action:
        """The action for `rest` (what follows externalPath: "" or "/..."). Raises NoAction for a path
        this publication does not serve, or one that names another model."""
        if self.openai:
            return _openai(rest)
        fixed = self._fixed.get(rest)
        return fixed if fixed is not None else _versioned_or_other(self.model, rest)


def _versioned_or_other(model: str, rest: str) -> Action:
    if found := _V1_MODEL.match(rest):
        name, predict = found.groups()
        _check_name(name, model)
        return Action(Kind.INFERENCE, "POST", rest) if predict else Action(Kind.PROBE, "GET", rest)
    if found := _V2_MODEL.match(rest):
        name, _, tail = found.groups()
        _check_name(name, model)
        if tail == "/infer":
            return Action(Kind.INFERENCE, "POST", rest)
        if tail == "/ready":
            return Action(Kind.PROBE, "GET", rest)
        return Action(Kind.METADATA, "GET", rest)
    raise NoAction(f"Nothing at {rest[:200] or '/'} under this published path")


def _openai(rest: str) -> Action:
    """`modelType: openai` publications speak the OpenAI endpoints: generation and embeddings spend the
    request quota and tokens; the model list is metadata, free like the other protocols' metadata."""
    endpoint = OPENAI_SUFFIXES.get(rest)
    if endpoint is None:
        raise NoAction(f"Nothing at {rest[:200] or '/'} under this published path")
    if endpoint == "models":
        return Action(Kind.METADATA, "GET", "/openai/v1/models")
    return Action(Kind.INFERENCE, "POST", f"/openai/v1/{endpoint}", endpoint=endpoint)


def _check_name(name: str, model: str) -> None:
    if name != model:
        # The published model's name is not told: the caller may not hold a key yet.
        raise NoAction(f"No model {name[:100]!r} at this published path")


def _fixed(model: str) -> dict[str, Action]:
    """The paths that name no version: one dict lookup on the hot path."""
    return {
        "": Action(Kind.METADATA, "GET", f"/v2/models/{model}"),
        "/": Action(Kind.PROBE, "GET", "/v2/health/live", Answer.V1_LIVE),
        "/predict": Action(Kind.INFERENCE, "POST", f"/v1/models/{model}:predict"),
        "/infer": Action(Kind.INFERENCE, "POST", f"/v2/models/{model}/infer"),
        "/v1/models": Action(Kind.METADATA, "GET", "/v1/models"),
        f"/v1/models/{model}": Action(Kind.PROBE, "GET", f"/v1/models/{model}"),
        f"/v1/models/{model}:predict": Action(Kind.INFERENCE, "POST", f"/v1/models/{model}:predict"),
        "/v2": Action(Kind.METADATA, "GET", "/v2"),
        "/v2/health/live": Action(Kind.PROBE, "GET", "/v2/health/live"),
        "/v2/health/ready": Action(Kind.PROBE, "GET", "/v2/health/ready"),
        f"/v2/models/{model}": Action(Kind.METADATA, "GET", f"/v2/models/{model}"),
        f"/v2/models/{model}/ready": Action(Kind.PROBE, "GET", f"/v2/models/{model}/ready"),
        f"/v2/models/{model}/infer": Action(Kind.INFERENCE, "POST", f"/v2/models/{model}/infer"),
    }
