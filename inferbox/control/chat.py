"""The console's chat: an OpenAI chat completions call sent to one of the model's replicas, its answer
read as it arrives so that a stream reaches the browser chunk by chunk.

The replica is held (counted as busy, so it is neither scaled away nor picked as idle) from the moment
the call is sent until the answer's last chunk was passed on or the caller went away: `ChatAnswer.close`
lets it go. The replica's own `/openai/v1/chat/completions` does the work; this module only carries the
bytes, with `ReplicaClient.open_stream` (a body read as it arrives over keep-alive connections).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from inferbox.control.model_rows import ModelRecord
from inferbox.runtime import Runtime
from inferbox.runtime.client import ReplicaClient, ReplicaUnreachable, StreamedAnswer

CHAT_PATH = "/openai/v1/chat/completions"
READY_WAIT_SECONDS = 30.0
# Until the answer's head; a stream may then take as long as it keeps sending.
HEAD_TIMEOUT_SECONDS = 60.0
# The longest silence allowed between two chunks (and for a whole answer that is not streamed).
IDLE_SECONDS = 60.0


class ChatAnswer:
    """A replica's answer: `status` and `content_type` at once, the body from `chunks()` or `read()`.
    `close()` (always call it) frees the replica and its connection."""

    def __init__(self, answer: StreamedAnswer, held: contextlib.AsyncExitStack) -> None:
        self._answer = answer
        self._held = held
        self.status = answer.status
        self.content_type = answer.content_type

    @property
    def streamed(self) -> bool:
        return self.status == 200 and self.content_type.startswith("text/event-stream")

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; ReplicaTimeout / ReplicaUnreachable when it stops or breaks off."""
        return self._answer.chunks(IDLE_SECONDS)

    async def read(self) -> bytes:
        return await self._answer.read(IDLE_SECONDS)

    async def close(self) -> None:
        await self._held.aclose()


class ChatCalls:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._http = ReplicaClient(timeout=HEAD_TIMEOUT_SECONDS)

    async def close(self) -> None:
        await self._http.close()

    async def open(self, record: ModelRecord, body: bytes) -> ChatAnswer:
        """Send `body` (a chat completions request, JSON) to a ready replica of `record`; return once
        the answer's head has arrived. Raises the runtime's errors (ModelNotRunning, ReplicaTimeout,
        ReplicaUnreachable) when no replica takes it."""
        for attempt in (1, 2):
            held = contextlib.AsyncExitStack()
            try:
                base_url = await held.enter_async_context(
                    self.runtime.connect(record.namespace, record.name, READY_WAIT_SECONDS)
                )
                answer = await self._http.open_stream(
                    "POST",
                    base_url,
                    CHAT_PATH,
                    body,
                    {"content-type": "application/json"},
                    HEAD_TIMEOUT_SECONDS,
                )
            except BaseException as exc:
                await held.aclose()
                # A replica that went away before it answered (stopped, scaled in): once more, on
                # another. Nothing was generated, so sending the call again is safe.
                if isinstance(exc, ReplicaUnreachable) and attempt == 1:
                    continue
                raise
            held.callback(answer.close)
            return ChatAnswer(answer, held)
        raise AssertionError("unreachable")
