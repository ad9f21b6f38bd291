"""Request bodies that routes read themselves (to bound their parse) and validate into a pydantic model.

A route that takes `Request` instead of a declared body parses with orjson, which refuses nesting deeper
than 1024 levels instead of recursing, and answers the spec's 400s for what is not a JSON object.
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from inferbox.api.errors import bad_request
from inferbox.blocking import in_thread

# Bodies larger than this are parsed in a worker thread: the gateway of `inferbox serve` answers from the
# same event loop, and a 32 MiB JSON document takes the loop away for a tenth of a second.
INLINE_PARSE_BYTES = 256 * 1024

M = TypeVar("M", bound=BaseModel)


async def validated_body(request: Request, model: type[M]) -> M:
    """The body as `model`: 400 when it is not JSON or not an object; field errors as the API words them."""
    raw = await request.body()
    try:
        data = await in_thread(orjson.loads, raw) if len(raw) > INLINE_PARSE_BYTES else orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("Request body must be valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
