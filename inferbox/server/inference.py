"""Running a decoded V2 request through the batcher: what HTTP's infer and gRPC's ModelInfer share."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from functools import partial
from typing import TypeVar

import numpy as np

from inferbox.server.batching import Batcher
from inferbox.server.errors import InferenceError
from inferbox.server.model import Model
from inferbox.server.protocol.v2 import InferRequest

logger = logging.getLogger("inferbox.server")
T = TypeVar("T")


async def run_framework(model: Model, call: Awaitable[T]) -> T:
    """Await a framework call, turning what the framework raised into a 400 or 500."""
    try:
        return await call
    except InferenceError:
        raise
    except Exception as exc:
        err = model.error_for(exc)
        if err.status >= 500:
            logger.error("prediction failed: %s", err.message, exc_info=exc)
        raise err from None


async def run_v2(
    model: Model, batcher: Batcher, request: InferRequest, *, expected: bool
) -> list[np.ndarray]:
    """The model's outputs for ``request``: batched when it has one input, alone when it feeds several
    named inputs. ``expected`` says the request was announced with ``batcher.expect()``."""
    if request.x is not None:
        return await run_framework(model, batcher.predict(request.x, expected=expected))
    if expected:
        batcher.forget()
    assert request.feeds is not None
    return await run_framework(model, batcher.run_alone(partial(model.predict_named, request.feeds)))
