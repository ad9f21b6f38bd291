"""`python -m benchmarks.llm_gateway`: what the gateway adds to a published language model.

- Time to first token of a streamed chat completion (the tiny GPT-2 of tests/llm_models.py, greedy, 8
  tokens), straight at the replica's `/openai/v1` and through the published URL (`{externalUrl}/v1`),
  one stream at a time, the two interleaved so that both see the same machine; the overhead is the
  difference of the medians (target: at most 1 ms at p50).
- The token metering's own cost per request, in process: bounding the body (tokens.cost), reserving
  and settling (in process, and on Redis when REDIS_URL answers), and passing a 64-chunk stream through
  the usage meter.

Numbers are reported, never asserted: they depend on the machine (recorded with them). `inferbox serve`
runs in a temporary directory and is stopped in a `finally`. `--quick` takes fewer samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from benchmarks.inferbox_setup import HUGE, start
from benchmarks.procs import Processes, wait_until

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "llm-gateway-latest.json"
BODY = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "the gateway reserves a budget of tokens"}],
    "max_tokens": 8,
    "temperature": 0,
    "stream": True,
}


def _first_token_ms(http: httpx.Client, url: str, headers: dict[str, str]) -> float | None:
    started = time.perf_counter()
    first: float | None = None
    with http.stream("POST", url, json=BODY, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():  # read to the end: the next stream starts afresh
            if (
                first is None
                and line.startswith("data: {")
                and '"content":""' not in line
                and "content" in line
            ):
                first = (time.perf_counter() - started) * 1000
    return first


def _origin(url: str) -> str:
    """The replica's address from the model's URL (which names its V1 predict path)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def _ttft(direct: str, published: str, key: str, samples: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    targets = {
        "direct": (f"{direct}/openai/v1/chat/completions", {}),
        "gateway": (f"{published}/v1/chat/completions", {"Authorization": f"Bearer {key}"}),
    }
    with httpx.Client(timeout=60) as http:
        for _ in range(3):  # warm-up: connections, the engine's first batch
            for url, headers in targets.values():
                _first_token_ms(http, url, headers)
        for _ in range(samples):
            for name, (url, headers) in targets.items():
                value = _first_token_ms(http, url, headers)
                if value is not None:
                    times[name].append(value)
    result = {name: _percentiles(values) for name, values in times.items()}
    result["overhead_p50_ms"] = round(result["gateway"]["p50"] - result["direct"]["p50"], 2)
    return result


def _per_call_us(fn: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


async def _limiter_us(redis_url: str | None, n: int) -> float:
    from inferbox.ratelimit import Limiter, Quota

    limiter = Limiter(redis_url, prefix=f"ibx-bench-{os.getpid()}")
    quota = Quota("tokensPerHour", HUGE, 3600)
    started = time.perf_counter()
    for _ in range(n):
        held = await limiter.reserve("bench", quota, 200)
        await limiter.settle(held, 50)
    elapsed = (time.perf_counter() - started) / n * 1e6
    await limiter.clear("bench", (quota,))
    return elapsed


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def metering(n: int) -> dict[str, float]:
    """Microseconds per request of each part of the metering, in this process."""
    from inferbox.gateway import tokens
    from inferbox.gateway.llm import _Meter

    raw = orjson.dumps({**BODY, "stream": False})
    delta = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    chunk = b"data: " + orjson.dumps({**delta, "usage": None}) + b"\n\n"
    usage = {"object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 70}}
    tail = b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"

    def stream() -> None:
        meter = _Meter(False)
        for _ in range(64):
            meter.feed(chunk)
        meter.feed(tail)

    result = {
        "bound_us": round(_per_call_us(lambda: tokens.cost("chat/completions", raw, 128), n), 2),
        "reserve_settle_memory_us": round(asyncio.run(_limiter_us(None, n)), 2),
        "stream_64_chunks_us": round(_per_call_us(stream, max(1, n // 10)), 2),
    }
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if _redis_answers(redis_url):
        result["reserve_settle_redis_us"] = round(asyncio.run(_limiter_us(redis_url, max(1, n // 10))), 2)
    return result


def run(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from llm_models import build_tiny_gpt2

    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="ibx-llmgw-bench-") as tmp:
        work = Path(tmp)
        try:
            model_dir = build_tiny_gpt2(work / "tiny")
            inferbox = start(procs, work)
            body = {"name": "tiny", "framework": "huggingface", "storageUri": f"file://{model_dir}"}
            created = inferbox.tenant.post("/api/models", json=body)
            if created.status_code != 201:
                raise RuntimeError(f"creating tiny: {created.status_code} {created.text}")
            ready = inferbox.wait_ready("tiny", timeout=180)
            limits = {
                "requestsPerMinute": HUGE,
                "requestsPerHour": HUGE,
                "tokensPerHour": HUGE,
                "burstLimit": HUGE,
            }
            answer = inferbox.tenant.post(
                "/api/models/tiny/publish", json={"config": {"rateLimiting": limits}}
            )
            answer.raise_for_status()
            published = answer.json()["publishedModel"]
            wait_until(
                lambda: (
                    httpx.get(
                        f"{published['externalUrl']}/v1/models", headers={"X-API-Key": published["apiKey"]}
                    ).status_code
                    == 200
                ),
                timeout=30,
                what="the published route",
            )
            ttft = _ttft(
                _origin(ready["url"]), published["externalUrl"], published["apiKey"], 20 if quick else 100
            )
            inferbox.close()
        finally:
            procs.stop_all()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "cpu": platform.processor()},
        "ttft_ms": ttft,
        "metering_us_per_request": metering(500 if quick else 5000),
    }


def markdown(result: dict[str, Any]) -> str:
    ttft, cost = result["ttft_ms"], result["metering_us_per_request"]
    lines = ["| measure | p50 | p99 |", "| --- | ---: | ---: |"]
    lines.append(
        f"| time to first token direct, ms | {ttft['direct']['p50']:.2f} | {ttft['direct']['p99']:.2f} |"
    )
    gateway = ttft["gateway"]
    lines.append(
        f"| time to first token through the gateway, ms | {gateway['p50']:.2f} | {gateway['p99']:.2f} |"
    )
    lines.append(f"| gateway overhead at p50, ms (target ≤ 1) | {ttft['overhead_p50_ms']:.2f} | - |")
    names = {
        "bound_us": "bounding the body (tokens.cost)",
        "reserve_settle_memory_us": "reserve + settle, in process",
        "reserve_settle_redis_us": "reserve + settle, on Redis (two round trips)",
        "stream_64_chunks_us": "a 64-chunk stream through the usage meter",
    }
    lines += ["", "| metering cost per request | µs |", "| --- | ---: |"]
    lines += [f"| {names[k]} | {v:,.1f} |" for k, v in cost.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm_gateway", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    result = run(args.quick)
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
