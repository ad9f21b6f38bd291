"""One call to an `openai` publication's chat, completion or embedding endpoint: reserve its tokens,
forward it with the amount reserved, pass the answer on (a stream chunk by chunk), settle to its usage.

The budget holds because every call reserves before it runs and the replica keeps the call within
what was reserved (`x-inferbox-max-tokens`, see tokens.py): however many calls race, on however many
gateways sharing Redis, what they can spend together fits the window. Each call then gives back what it
did not use the moment it ends, so the budget held for running calls is never refused to later ones
for longer than those calls run.

A stream is asked for its usage (`stream_options.include_usage`) so that it is counted exactly; the
usage chunk is passed on only to a caller who asked for it. When the caller goes away mid-stream the
rest of the answer is still read (the replica's cap bounds it) so that what was generated is what is
counted; when the replica fails mid-answer, or answers without a usage, the whole reservation is
counted: the cap guarantees no more was generated, and no less can be proved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Message, Receive, Send

from inferbox.gateway import tokens
from inferbox.gateway.metrics import GatewayMetrics
from inferbox.gateway.routes import Route
from inferbox.gateway.upstream import Upstream
from inferbox.gateway.usage import UsageRecorder
from inferbox.ratelimit import Decision, Limiter, QuotaState, Reservation
from inferbox.runtime.client import (
    REPLICA_ERRORS,
    ReplicaClient,
    ReplicaTimeout,
    ReplicaUnreachable,
    StreamedAnswer,
    failure,
)

log = logging.getLogger("inferbox.gateway")

BUDGET_REFUSAL = "token_budget_exceeded"
# Idle time allowed between two chunks of a stream (a whole answer has the gateway's call timeout).
STREAM_IDLE_SECONDS = 60.0


class LlmReply(Exception):
    """An answer the gateway gives itself on an openai route (raised before anything was sent)."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def _duration(seconds: int) -> str:
    """OpenAI's reset format: `1s`, `6m0s`, `1h0m0s`."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def openai_headers(requests: QuotaState | None, budget: QuotaState) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers (its clients read these names) for requests and tokens."""
    headers = {
        "x-ratelimit-limit-tokens": str(budget.quota.amount),
        "x-ratelimit-remaining-tokens": str(budget.remaining),
        "x-ratelimit-reset-tokens": _duration(budget.reset_after),
    }
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests.quota.amount)
        headers["x-ratelimit-remaining-requests"] = str(requests.remaining)
        headers["x-ratelimit-reset-requests"] = _duration(requests.reset_after)
    return headers


def request_state(decision: Decision) -> QuotaState | None:
    """The quota OpenAI's `-requests` headers describe: requests per minute, as OpenAI's RPM."""
    by_name = {s.quota.name: s for s in decision.states}
    return by_name.get("requestsPerMinute") or (decision.states[0] if decision.states else None)


@dataclass
class _Meter:
    """What one stream carried: its usage when the replica sent one."""

    wants_usage: bool
    usage_total: int | None = None
    pending: bytes = b""
    seen_end: bool = False

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in `pending + chunk` that go to the caller; keeps a partial event."""
        data = self.pending + chunk
        out: list[bytes] = []
        while True:
            cut = data.find(b"\n\n")
            if cut < 0:
                break
            event, data = data[: cut + 2], data[cut + 2 :]
            if self._keep(event):
                out.append(event)
        self.pending = data
        return b"".join(out)

    def _keep(self, event: bytes) -> bool:
        payload = event.strip()
        if not payload.startswith(b"data:"):
            return True
        payload = payload[5:].strip()
        if payload == b"[DONE]":
            self.seen_end = True
            return True
        if b'"usage"' not in payload or b'"usage":null' in payload:
            return True  # (the common chunk, told apart without parsing it)
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(parsed, dict):
            return True
        total = tokens.total_tokens(parsed.get("usage"))
        if total is None:
            return True
        self.usage_total = total
        # The usage chunk the gateway asked for: the caller sees it only if it asked too.
        return self.wants_usage or bool(parsed.get("choices"))


@dataclass
class _Call:
    """One call's reservation and what it finally counts, settled exactly once."""

    reservation: Reservation
    used: int | None = None
    settled: bool = False
    state: QuotaState | None = field(default=None)


class LlmCalls:
    def __init__(
        self,
        limiter: Limiter,
        usage: UsageRecorder,
        upstream: Upstream,
        metrics: GatewayMetrics,
        *,
        ready_wait: float,
        timeout: float,
    ) -> None:
        self.limiter = limiter
        self.usage = usage
        self.upstream = upstream
        self.metrics = metrics
        self.ready_wait = ready_wait
        self.timeout = timeout
        self.http = ReplicaClient(timeout=timeout)
        self.contexts = tokens.ContextLengths()

    async def aclose(self) -> None:
        await self.http.close()

    # -- the call --------------------------------------------------------------------------------
    async def serve(
        self,
        receive: Receive,
        send: Send,
        route: Route,
        action: str,
        key: str,
        body: bytes,
        headers: dict[str, str],
        decision: Decision,
    ) -> None:
        """Answer the call on `send`. Raises LlmReply for an answer made here (nothing sent yet)."""
        base = decision.headers("requestsPerMinute")
        requests = request_state(decision)
        context = await self._context(route)
        try:
            cost = tokens.cost(action, body, context)
        except tokens.BadRequest as exc:
            (state,) = await self.limiter.states(key, (route.token_quota,))
            raise LlmReply(
                400,
                {"error": "Invalid request", "details": str(exc)},
                {**base, **openai_headers(requests, state)},
            ) from None
        reservation = await self.limiter.reserve(key, route.token_quota, cost.bound)
        if reservation.granted == 0:
            raise self._budget_spent(route, reservation.state, base, requests)
        call = _Call(reservation)
        try:
            await self._run(receive, send, route, action, body, headers, cost, call, base, requests)
        finally:
            # Whatever happened (a dropped client, a failed replica, a cancelled task), the reservation
            # is settled, and the settle itself cannot be cancelled half way.
            await asyncio.shield(self._settle(route, call))

    def _budget_spent(
        self, route: Route, budget: QuotaState, base: dict[str, str], requests: QuotaState | None
    ) -> LlmReply:
        self.metrics.requests.labels(route.namespace, route.model, "rate_limited").inc()
        self.usage.refused(route.publication_id, "rateLimited")
        quota = route.token_quota
        retry = str(max(1, budget.reset_after))
        return LlmReply(
            429,
            {"error": "Rate limit exceeded", "details": f"tokensPerHour: {quota.amount} tokens per hour"},
            {**base, **openai_headers(requests, budget), "Retry-After": retry},
        )

    async def _settle(self, route: Route, call: _Call) -> None:
        if call.settled:
            return
        call.settled = True
        used = call.reservation.granted if call.used is None else call.used
        try:
            call.state = await self.limiter.settle(call.reservation, used)
        except Exception as exc:  # Redis went away: the unused part stays held until the window ends
            log.warning("could not settle a token reservation: %s", exc)
        self.usage.record(route.publication_id, tokens=used)

    async def _run(
        self,
        receive: Receive,
        send: Send,
        route: Route,
        action: str,
        body: bytes,
        headers: dict[str, str],
        cost: tokens.Cost,
        call: _Call,
        base: dict[str, str],
        requests: QuotaState | None,
    ) -> None:
        granted = call.reservation.granted
        send_headers = {
            "content-type": headers.get("content-type", "application/json"),
            tokens.BUDGET_HEADER: str(granted),
        }
        if request_id := headers.get("x-request-id"):
            send_headers["x-request-id"] = request_id
        upstream_body = tokens.with_stream_usage(cost.body) if cost.stream else body
        labels = (route.namespace, route.model)
        started = time.perf_counter()
        try:
            async with contextlib.AsyncExitStack() as stack:
                answer = await self._open(stack, route, f"/openai/v1/{action}", upstream_body, send_headers)
                stack.callback(answer.close)
                if (
                    cost.stream
                    and answer.status == 200
                    and answer.content_type.startswith("text/event-stream")
                ):
                    await self._pass_stream(receive, send, answer, cost, call, base, requests)
                    return
                content = await answer.read(self.timeout)
        except REPLICA_ERRORS as exc:
            # Nothing reached the caller; a replica that timed out may still be generating.
            call.used = granted if isinstance(exc, ReplicaTimeout) else 0
            f = failure(exc)
            raise LlmReply(
                f.status, {"error": f.error, "details": f.details}, {**base, **f.headers}
            ) from None
        finally:
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        if answer.status >= 400:
            call.used = 0
            if _budget_refusal(answer.status, content):
                # The prompt alone is more than was left: the caller hears what a spent budget says.
                await self._settle(route, call)
                budget = call.state or call.reservation.state
                raise self._budget_spent(route, budget, base, requests)
        else:
            call.used = _usage_of(content)
        await self._settle(route, call)
        budget = call.state or call.reservation.state
        out = {**base, **openai_headers(requests, budget)}
        await _send_whole(send, answer.status, content, answer.content_type, out)

    async def _context(self, route: Route) -> int | None:
        """The model's context length (None when its replica does not say), asked once a minute."""
        key = (route.publication_id, route.namespace, route.model)
        fresh, length = self.contexts.get(key)
        if fresh:
            return length
        try:
            async with contextlib.AsyncExitStack() as stack:
                answer = await self._open(stack, route, "/openai/v1/models", b"", {}, method="GET")
                stack.callback(answer.close)
                content = await answer.read(self.timeout)
        except REPLICA_ERRORS:
            return length  # the call itself will say what is wrong with the replica
        return self.contexts.learn(key, content) if answer.status == 200 else length

    async def _open(
        self,
        stack: contextlib.AsyncExitStack,
        route: Route,
        path: str,
        body: bytes,
        headers: dict[str, str],
        method: str = "POST",
    ) -> StreamedAnswer:
        """Send the call to a replica, a second one if the first was gone before it answered. The
        replica stays picked (counted as busy) until `stack` closes."""
        for attempt in (1, 2):
            inner = contextlib.AsyncExitStack()
            base_url = await inner.enter_async_context(self.upstream.connect(route, self.ready_wait))
            try:
                answer = await self.http.open_stream(method, base_url, path, body, headers, self.timeout)
            except ReplicaUnreachable:
                await inner.aclose()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                await inner.aclose()
                raise
            stack.push_async_exit(inner)
            return answer
        raise AssertionError("unreachable")

    async def _pass_stream(
        self,
        receive: Receive,
        send: Send,
        answer: StreamedAnswer,
        cost: tokens.Cost,
        call: _Call,
        base: dict[str, str],
        requests: QuotaState | None,
    ) -> None:
        """Pass the events on as they complete; stop sending (but keep reading) once the caller left."""
        meter = _Meter(cost.wants_stream_usage)
        left = asyncio.ensure_future(_disconnected(receive))
        out = {**base, **openai_headers(requests, call.reservation.state), "cache-control": "no-cache"}
        raw = [(b"content-type", answer.content_type.encode("latin-1"))]
        raw.extend((k.lower().encode(), v.encode()) for k, v in out.items())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            async for chunk in answer.chunks(STREAM_IDLE_SECONDS):
                events = meter.feed(chunk)
                if events and not left.done():
                    await send({"type": "http.response.body", "body": events, "more_body": True})
            if not left.done():
                await send({"type": "http.response.body", "body": meter.pending, "more_body": False})
        except REPLICA_ERRORS as exc:
            # The head was sent: all that is left is to end the stream where it broke.
            log.warning("stream from the model broke off: %s", exc)
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            call.used = meter.usage_total  # None (no usage sent): the reservation counts
        finally:
            left.cancel()


async def _disconnected(receive: Receive) -> None:
    """Returns when the caller has gone away (ASGI's http.disconnect)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


def _budget_refusal(status: int, content: bytes) -> bool:
    if status != 400:
        return False
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == BUDGET_REFUSAL


def _usage_of(content: bytes) -> int | None:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return tokens.total_tokens(parsed.get("usage")) if isinstance(parsed, dict) else None


async def _send_whole(
    send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    raw = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
