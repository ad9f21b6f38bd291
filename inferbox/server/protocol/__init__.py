"""Request decoding and response encoding for the two HTTP protocols, plus the JSON helpers they
share. Everything here is plain functions on bytes and numpy arrays: no I/O."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from inferbox.server.errors import InferenceError

_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _fallback(value: Any) -> Any:
    # orjson serialises C-contiguous numeric arrays itself; everything else numpy lands here.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    """JSON-encode a response body; numpy arrays become nested lists (ints stay ints)."""
    return orjson.dumps(value, default=_fallback, option=_DUMP_OPTIONS)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object, or raise a 400."""
    if not body:
        raise InferenceError(400, "request body is empty: expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InferenceError(400, f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InferenceError(400, "request body must be a JSON object")
    return payload
