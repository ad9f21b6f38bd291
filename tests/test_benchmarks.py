"""The benchmark harness keeps working: wrk output parsing, the Python load loop, the targets' logic, and a
1 s smoke run of `python -m benchmarks` against inferbox. No timing assertions: only that numbers exist
and that nothing was refused."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.drivers import Load, PythonDriver, lua_script, parse_wrk, percentile

ROOT = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/models/iris/predict
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.15ms    1.02ms  41.20ms   91.00%
    Req/Sec     7.61k   512.33     8.50k    72.00%
  Latency Distribution
     50%    1.98ms
     75%    2.30ms
     90%    2.90ms
     99%    1.05s
  151423 requests in 10.00s, 25.13MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  15139.55
Transfer/sec:      2.51MB
"""


def test_parse_wrk_reads_every_number() -> None:
    numbers = parse_wrk(WRK_OUTPUT)
    assert numbers["requests"] == 151423
    assert numbers["duration_s"] == pytest.approx(10.0)
    assert numbers["rps"] == pytest.approx(15139.55)
    assert numbers["p50_ms"] == pytest.approx(1.98)
    assert numbers["p99_ms"] == pytest.approx(1050.0)
    assert numbers["non_2xx"] == 7
    assert numbers["socket_errors"] == 3


def test_parse_wrk_without_error_lines_counts_zero() -> None:
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if not line.strip().startswith(("Socket", "Non-2xx"))
    ).replace("1.98ms", "850.00us")
    numbers = parse_wrk(clean)
    assert numbers["non_2xx"] == 0 and numbers["socket_errors"] == 0
    assert numbers["p50_ms"] == pytest.approx(0.85)


def test_parse_wrk_refuses_output_without_numbers() -> None:
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_lua_script_sets_method_body_and_headers() -> None:
    script = lua_script(Load("http://x/", b'{"a": "b\\"c"}', {"X-API-Key": "pk_live_1"}))
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = "{\\"a\\": \\"b\\\\\\"c\\"}"' in script
    assert 'wrk.headers["X-API-Key"] = "pk_live_1"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script


def test_lua_script_carries_any_byte() -> None:
    """Binary bodies (the V2 binary tensor extension) survive Lua's string escapes byte for byte."""
    body = bytes(range(256)) + b'"\\'
    script = lua_script(Load("http://x/", body))
    (line,) = [line for line in script.splitlines() if line.startswith("wrk.body = ")]
    literal = line.removeprefix('wrk.body = "').removesuffix('"')
    decoded = bytearray()
    pos = 0
    while pos < len(literal):  # Lua's rules for the escapes used: \ddd, \", \\
        char = literal[pos]
        if char != "\\":
            decoded.append(ord(char))
            pos += 1
        elif literal[pos + 1].isdigit():
            decoded.append(int(literal[pos + 1 : pos + 4]))
            pos += 4
        else:
            decoded.append(ord(literal[pos + 1]))
            pos += 2
    assert bytes(decoded) == body


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = 500 if self.path == "/fail" else 200
        body = b'{"predictions": [1]}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tiny_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_python_driver_counts_answers(tiny_server: str) -> None:
    ok = PythonDriver().run(Load(tiny_server + "/ok", b"{}"), connections=2, threads=1, duration=0.3)
    assert ok.driver == "python" and ok.requests > 0 and ok.rps > 0
    assert ok.non_2xx == 0 and ok.socket_errors == 0
    assert ok.p50_ms is not None and ok.p99_ms is not None
    bad = PythonDriver().run(Load(tiny_server + "/fail", b"{}"), connections=1, threads=1, duration=0.2)
    assert bad.requests > 0 and bad.non_2xx == bad.requests


def _row(row_id: str, connections: int, rps: float, p50: float, non_2xx: int = 0) -> dict[str, object]:
    return {
        "id": row_id,
        "connections": connections,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "non_2xx": non_2xx,
        "socket_errors": 0,
        "predict": True,
    }


def test_targets_say_what_held() -> None:
    rows = [
        _row("kserve-direct", 1, 1000, 1.0),
        _row("kserve-direct", 32, 2000, 10.0),
        _row("inferbox-published", 1, 1500, 0.8),
        _row("inferbox-published", 32, 7000, 3.0),
        _row("inferbox-model-direct", 32, 9000, 2.0),
        _row("validate-api-key", 32, 2500, 5.0),
        _row("inferbox-published-v2", 32, 7000, 3.0),
    ]
    report.add_ratios(rows)
    assert rows[3]["ratio_to_kserve"] == pytest.approx(3.5)
    measures = {
        "create_to_ready": {"median_s": 1.2, "samples_s": [1.2]},
        "scale_to_zero_first_request": {"seconds": 2.5},
        "idle_rss": {"serve_mb": 120.0, "replica_mb": 130.0},
        "list_models": {"p50_ms": 20.0, "models_listed": 1000},
    }
    held = {t["target"]: t["held"] for t in report.targets(rows, measures)}
    assert held["published URL ≥ 3x KServe direct req/s at 32 connections, no non-2xx"] is True
    assert held["model endpoint direct ≥ 5x KServe direct at 32 connections"] is False
    assert held["published p50 at 1 connection ≤ KServe direct p50 at 1 connection"] is True
    assert held["create → Ready ≤ 1.5 s"] is True
    assert held["first request after scale-to-zero ≤ 2 s"] is False
    assert held["idle RSS of inferbox serve ≤ 150 MB"] is True
    assert held["idle RSS of one sklearn replica ≤ 120 MB"] is False
    assert held["GET /api/models with 1,000 models p50 ≤ 50 ms"] is True
    assert held["validate-api-key ≥ 2,000/s"] is True
    assert held["published V2 JSON ≥ 4x KServe direct V1 req/s at 32 connections, no non-2xx"] is False
    binary = "V2 binary tensors (32x4 FP32) direct no slower than JSON at 32 connections"
    grpc = "gRPC direct ≥ 1.5x MLServer gRPC at 32 connections"
    assert held[binary] is None and held[grpc] is None  # not measured
    more = [
        _row("inferbox-v2-json-batch", 32, 1000, 5.0),
        _row("inferbox-v2-binary-batch", 32, 1100, 5.0),
        _row("inferbox-grpc-direct", 32, 1400, 5.0),
        _row("mlserver-grpc-direct", 32, 1000, 5.0),
    ]
    held = {t["target"]: t["held"] for t in report.targets(rows + more, measures)}
    assert held[binary] is True and held[grpc] is False
    # A refused published call breaks the first target whatever the throughput.
    rows[3]["non_2xx"] = 1
    first = report.targets(rows, measures)[0]
    assert first["held"] is False
    # Without KServe the comparisons are not measured rather than failed.
    alone = [r for r in rows if r["id"] != "kserve-direct"]
    assert report.targets(alone, {})[0]["held"] is None


@pytest.mark.timeout(300)
def test_quick_benchmark_of_inferbox_runs(tmp_path: Path) -> None:
    """`python -m benchmarks --quick --duration 1 --only inferbox --output DIR`: never builds the peers,
    writes only into DIR, and measures every inferbox row with nothing refused."""
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--duration",
            "1",
            "--only",
            "inferbox",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads((out / "latest.json").read_text())
    assert (out / "benchmarks.md").exists()
    assert result["errors"] == []
    assert result["driver"]["name"] in ("wrk", "python")
    rows = {(r["id"], r["connections"]): r for r in result["rows"]}
    expected = {
        ("inferbox-model-direct", 1),
        ("inferbox-model-direct", 32),
        ("inferbox-api-predict", 1),
        ("inferbox-api-predict", 32),
        ("inferbox-published", 1),
        ("inferbox-published", 32),
        ("inferbox-published-v2", 1),
        ("inferbox-published-v2", 32),
        ("validate-api-key", 32),
        ("inferbox-v2-json-batch", 1),
        ("inferbox-v2-json-batch", 32),
        ("inferbox-v2-binary-batch", 1),
        ("inferbox-v2-binary-batch", 32),
        ("inferbox-grpc-direct", 1),
        ("inferbox-grpc-direct", 32),
    }
    assert expected <= set(rows)
    for key in expected:
        row = rows[key]
        assert row["requests"] > 0 and row["rps"] > 0, key
        assert isinstance(row["p50_ms"], float) and isinstance(row["p99_ms"], float), key
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0, (key, row)
        grpc_row = key[0] == "inferbox-grpc-direct"
        assert row["driver"] == ("grpc.aio loop" if grpc_row else result["driver"]["name"])
    measures = result["measures"]
    assert measures["create_to_ready"]["median_s"] > 0
    # Language models (the test extra installs transformers): generation was measured, and documented.
    llm = result["llm"]
    assert all(v > 0 for v in llm["tokens_per_second"].values()), llm
    assert llm["ttft_ms"]["p50"] > 0
    assert "generation tokens/s, 16 concurrent (batched)" in (out / "benchmarks.md").read_text()
    assert measures["scale_to_zero_first_request"]["seconds"] > 0
    assert measures["idle_rss"]["serve_mb"] > 0 and measures["idle_rss"]["replica_mb"] > 0
    assert measures["list_models"]["models_listed"] >= 1000 and measures["list_models"]["p50_ms"] > 0
    assert len(result["targets"]) == 12
