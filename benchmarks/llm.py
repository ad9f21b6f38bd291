"""`python -m benchmarks.llm`: generation on one replica of the tiny GPT-2 (tests/llm_models.py).

Measures, against the replica's OpenAI endpoint ``/openai/v1/completions`` with greedy decoding and a
fixed completion length (so every request generates the same number of tokens):

- generation tokens/s with 1 request at a time, and with 16 concurrent requests: all 16 at once (the
  engine batches them step by step) versus the same 16 sent one after the other;
- time to first token (the first streamed chunk carrying text), p50 and p99, one stream at a time.

Numbers are reported, never asserted: they depend on the machine (recorded with them). The replica is
stopped in a ``finally``. ``--quick`` runs fewer requests (for the smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "llm-latest.json"
COMPLETION_TOKENS = 64
CONCURRENT = 16
PROMPT = "the gateway reserves a budget of tokens"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start(model_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inferbox.server",
            "--name",
            "tiny",
            "--framework",
            "huggingface",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"replica exited with {proc.returncode}")
        try:
            if httpx.get(base + "/v2/health/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("replica not ready in 180 s")


BODY = {"model": "tiny", "prompt": PROMPT, "max_tokens": COMPLETION_TOKENS, "temperature": 0}


async def _one(http: httpx.AsyncClient) -> int:
    answer = await http.post("/openai/v1/completions", json=BODY)
    answer.raise_for_status()
    tokens: int = answer.json()["usage"]["completion_tokens"]
    return tokens


async def _tokens_per_second(base: str, requests: int, concurrent: bool) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:
        started = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*(_one(http) for _ in range(requests)))
        else:
            counts = [await _one(http) for _ in range(requests)]
        return sum(counts) / (time.perf_counter() - started)


def _ttft(base: str, samples: int) -> list[float]:
    body = {**BODY, "stream": True, "max_tokens": 8}
    times = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(samples):
            started = time.perf_counter()
            first: float | None = None
            with http.stream("POST", "/openai/v1/completions", json=body) as response:
                for line in response.iter_lines():  # read to the end: the next stream starts afresh
                    if first is None and line.startswith("data: {") and '"text":""' not in line:
                        first = (time.perf_counter() - started) * 1000
            if first is not None:
                times.append(first)
    return times


def run(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from llm_models import build_tiny_gpt2

    with tempfile.TemporaryDirectory(prefix="ibx-llm-bench-") as tmp:
        model_dir = build_tiny_gpt2(Path(tmp) / "tiny")
        proc, base = _start(model_dir)
        try:
            asyncio.run(_tokens_per_second(base, 2, False))  # warm-up
            rounds = 1 if quick else 2
            single = max(asyncio.run(_tokens_per_second(base, 4, False)) for _ in range(rounds))
            serial = max(asyncio.run(_tokens_per_second(base, CONCURRENT, False)) for _ in range(rounds))
            batched = max(asyncio.run(_tokens_per_second(base, CONCURRENT, True)) for _ in range(rounds))
            ttft = sorted(_ttft(base, 10 if quick else 50))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "cpu": platform.processor()},
        "completion_tokens": COMPLETION_TOKENS,
        "tokens_per_second": {
            "1 request": round(single, 1),
            f"{CONCURRENT} one at a time": round(serial, 1),
            f"{CONCURRENT} concurrent (batched)": round(batched, 1),
        },
        "batched_vs_serial": round(batched / serial, 2),
        "ttft_ms": {
            "p50": round(statistics.median(ttft), 2),
            "p99": round(ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))], 2),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    tps = result["tokens_per_second"]
    lines = ["| measure | value |", "| --- | ---: |"]
    lines += [f"| generation tokens/s, {name} | {value:,.1f} |" for name, value in tps.items()]
    lines.append(f"| batched vs one at a time | {result['batched_vs_serial']:.2f}x |")
    lines.append(f"| time to first token direct, p50 ms | {result['ttft_ms']['p50']:.2f} |")
    lines.append(f"| time to first token direct, p99 ms | {result['ttft_ms']['p99']:.2f} |")
    return "\n".join(lines)


def markdown_section(result: dict[str, Any]) -> str:
    """The language-model section of docs/benchmarks.md."""
    return "\n".join(
        [
            "### Language models (the tiny GPT-2 of tests/llm_models.py, one replica)",
            "",
            f"`/openai/v1/completions`, greedy, {result['completion_tokens']} tokens per request;"
            " tokens/s counts `usage.completion_tokens` over wall time; time to first token is the first"
            " streamed chunk with text, one stream at a time, direct to the replica"
            " (`python -m benchmarks.llm` runs this part alone). Measured"
            f" {result['when']} on {result['machine']['cpus']} cores.",
            "",
            markdown(result),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
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
