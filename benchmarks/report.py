"""The result: one table of load runs, the control-plane measures, the targets (held or not), and the
context that makes the numbers mean something (machine, date, versions, driver, exact command).

Written three ways: printed, as JSON (benchmarks/results/YYYY-MM-DDTHHMMSS.json and latest.json), and
as Markdown (docs/benchmarks.md, regenerated whole on every full run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

KSERVE_ROW = "kserve-direct"


def machine() -> dict[str, Any]:
    """Cores (os.cpu_count()), the CPU model (/proc/cpuinfo) and memory (/proc/meminfo)."""
    model = "unknown"
    mem_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": mem_gb,
        "kernel": os.uname().release,
        # Other work on the machine skews every number: recorded so that a noisy run can be told apart.
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's req/s over KServe direct's at the same connection count (None without KServe)."""
    kserve = {r["connections"]: r["rps"] for r in rows if r["id"] == KSERVE_ROW and r.get("rps")}
    for row in rows:
        base = kserve.get(row["connections"])
        row["ratio_to_kserve"] = round(row["rps"] / base, 3) if base and row.get("rps") is not None else None


def _row(rows: list[dict[str, Any]], row_id: str, connections: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["id"] == row_id and r["connections"] == connections), None)


def _held(check: Callable[[], bool | None]) -> bool | None:
    try:
        return check()
    except (KeyError, TypeError):
        return None


def targets(rows: list[dict[str, Any]], measures: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what was observed and whether it held (None: not measured)."""
    out: list[dict[str, Any]] = []

    def add(target: str, observed: str, held: bool | None) -> None:
        out.append({"target": target, "observed": observed, "held": held})

    ks32, ks1 = _row(rows, KSERVE_ROW, 32), _row(rows, KSERVE_ROW, 1)
    pub32, pub1 = _row(rows, "inferbox-published", 32), _row(rows, "inferbox-published", 1)
    direct32 = _row(rows, "inferbox-model-direct", 32)
    published_non2xx = sum(r["non_2xx"] + r["socket_errors"] for r in rows if r["id"] == "inferbox-published")

    if pub32 and ks32:
        ratio = pub32["rps"] / ks32["rps"]
        add(
            "published URL ≥ 3x KServe direct req/s at 32 connections, no non-2xx",
            f"{ratio:.2f}x ({pub32['rps']:,.0f} vs {ks32['rps']:,.0f} req/s), "
            f"{published_non2xx} non-2xx/errors",
            ratio >= 3.0 and published_non2xx == 0,
        )
    else:
        add("published URL ≥ 3x KServe direct req/s at 32 connections, no non-2xx", "not measured", None)
    pub_v2 = _row(rows, "inferbox-published-v2", 32)
    v2_non2xx = sum(r["non_2xx"] + r["socket_errors"] for r in rows if r["id"] == "inferbox-published-v2")
    v2_target = "published V2 JSON ≥ 4x KServe direct V1 req/s at 32 connections, no non-2xx"
    if pub_v2 and ks32:
        ratio = pub_v2["rps"] / ks32["rps"]
        add(
            v2_target,
            f"{ratio:.2f}x ({pub_v2['rps']:,.0f} vs {ks32['rps']:,.0f} req/s), {v2_non2xx} non-2xx/errors",
            ratio >= 4.0 and v2_non2xx == 0,
        )
    else:
        add(v2_target, "not measured", None)
    if direct32 and ks32:
        ratio = direct32["rps"] / ks32["rps"]
        add(
            "model endpoint direct ≥ 5x KServe direct at 32 connections",
            f"{ratio:.2f}x ({direct32['rps']:,.0f} vs {ks32['rps']:,.0f} req/s)",
            ratio >= 5.0,
        )
    else:
        add("model endpoint direct ≥ 5x KServe direct at 32 connections", "not measured", None)
    if pub1 and ks1 and pub1["p50_ms"] is not None and ks1["p50_ms"] is not None:
        add(
            "published p50 at 1 connection ≤ KServe direct p50 at 1 connection",
            f"{pub1['p50_ms']:.2f} ms vs {ks1['p50_ms']:.2f} ms",
            pub1["p50_ms"] <= ks1["p50_ms"],
        )
    else:
        add("published p50 at 1 connection ≤ KServe direct p50 at 1 connection", "not measured", None)

    binary32, json32 = _row(rows, "inferbox-v2-binary-batch", 32), _row(rows, "inferbox-v2-json-batch", 32)
    name = "V2 binary tensors (32x4 FP32) direct no slower than JSON at 32 connections"
    if binary32 and json32 and json32["rps"]:
        ratio = binary32["rps"] / json32["rps"]
        add(name, f"{ratio:.2f}x ({binary32['rps']:,.0f} vs {json32['rps']:,.0f} req/s)", ratio >= 1.0)
    else:
        add(name, "not measured", None)
    grpc32, ml_grpc32 = _row(rows, "inferbox-grpc-direct", 32), _row(rows, "mlserver-grpc-direct", 32)
    name = "gRPC direct ≥ 1.5x MLServer gRPC at 32 connections"
    if grpc32 and ml_grpc32 and ml_grpc32["rps"]:
        ratio = grpc32["rps"] / ml_grpc32["rps"]
        add(name, f"{ratio:.2f}x ({grpc32['rps']:,.0f} vs {ml_grpc32['rps']:,.0f} req/s)", ratio >= 1.5)
    else:
        add(name, "not measured", None)

    def measured(key: str, field: str) -> Any:
        value = measures.get(key)
        return None if not isinstance(value, dict) else value.get(field)

    ready = measured("create_to_ready", "median_s")
    add(
        "create → Ready ≤ 1.5 s",
        "not measured" if ready is None else f"{ready:.3f} s (median)",
        _held(lambda: ready <= 1.5),
    )
    zero = measured("scale_to_zero_first_request", "seconds")
    add(
        "first request after scale-to-zero ≤ 2 s",
        "not measured" if zero is None else f"{zero:.3f} s",
        _held(lambda: zero <= 2.0),
    )
    serve = measured("idle_rss", "serve_mb")
    add(
        "idle RSS of inferbox serve ≤ 150 MB",
        "not measured" if serve is None else f"{serve:.1f} MB",
        _held(lambda: serve <= 150),
    )
    replica = measured("idle_rss", "replica_mb")
    add(
        "idle RSS of one sklearn replica ≤ 120 MB",
        "not measured" if replica is None else f"{replica:.1f} MB",
        _held(lambda: replica <= 120),
    )
    listing = measured("list_models", "p50_ms")
    count = measured("list_models", "models_listed")
    add(
        "GET /api/models with 1,000 models p50 ≤ 50 ms",
        "not measured" if listing is None else f"{listing:.1f} ms ({count} models)",
        _held(lambda: listing <= 50 and count >= 1000),
    )
    validate = _row(rows, "validate-api-key", 32)
    add(
        "validate-api-key ≥ 2,000/s",
        "not measured" if validate is None else f"{validate['rps']:,.0f}/s, {validate['non_2xx']} non-2xx",
        None if validate is None else validate["rps"] >= 2000 and validate["non_2xx"] == 0,
    )
    return out


# -- rendering -------------------------------------------------------------------------------------------


def _num(value: Any, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _held_text(held: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[held]


TABLE_HEAD = ("endpoint", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx", "x KServe")


def table_rows(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            r["label"],
            str(r["connections"]),
            _num(r["rps"], ",.0f"),
            _num(r["p50_ms"], ".2f"),
            _num(r["p99_ms"], ".2f"),
            str(r["non_2xx"] + r["socket_errors"]),
            _num(r.get("ratio_to_kserve"), ".2f", "x"),
        )
        for r in rows
    ]


def _parts(rss: dict[str, Any], who: str) -> str:
    detail = rss.get(f"{who}_detail_mb") or {}
    if "RssAnon" not in detail or "RssFile" not in detail:
        return ""
    pss = f", PSS {detail['Pss']:.1f}" if "Pss" in detail else ""
    return f" (anon {detail['RssAnon']:.1f}, file {detail['RssFile']:.1f}{pss})"


def measure_rows(measures: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    ready = measures.get("create_to_ready")
    if isinstance(ready, dict):
        samples = ", ".join(f"{s:.3f}" for s in ready["samples_s"])
        out.append(("create → Ready (median)", f"{ready['median_s']:.3f} s (samples: {samples})"))
    zero = measures.get("scale_to_zero_first_request")
    if isinstance(zero, dict):
        out.append(("first request after scale-to-zero", f"{zero['seconds']:.3f} s"))
    rss = measures.get("idle_rss")
    if isinstance(rss, dict):
        out.append(
            ("idle RSS: inferbox serve", _num(rss.get("serve_mb"), ".1f", " MB") + _parts(rss, "serve"))
        )
        out.append(
            (
                "idle RSS: one sklearn replica",
                _num(rss.get("replica_mb"), ".1f", " MB") + _parts(rss, "replica"),
            )
        )
    after = measures.get("rss_after_load")
    if isinstance(after, dict):
        out.append(
            (
                "RSS after the load runs: serve / replica",
                f"{_num(after.get('serve_mb'), '.1f')} / {_num(after.get('replica_mb'), '.1f')} MB",
            )
        )
    if isinstance(measures.get("kserve_idle_rss_mb"), float):
        out.append(
            ("idle RSS: KServe ModelServer (for comparison)", f"{measures['kserve_idle_rss_mb']:.1f} MB")
        )
    if isinstance(measures.get("mlserver_idle_rss_mb"), float):
        out.append(
            (
                "idle RSS: MLServer, all its processes (for comparison)",
                f"{measures['mlserver_idle_rss_mb']:.1f} MB",
            )
        )
    listing = measures.get("list_models")
    if isinstance(listing, dict):
        out.append(
            (
                f"GET /api/models, {listing['models_listed']} models",
                f"p50 {listing['p50_ms']:.1f} ms, p90 {listing['p90_ms']:.1f} ms ({listing['calls']} calls)",
            )
        )
    k8s = measures.get("kubernetes_list")
    if isinstance(k8s, dict) and "p50_ms" in k8s:
        out.append(
            (
                f"GET /api/models, {k8s['models_listed']} InferenceServices (kubernetes runtime, emulator)",
                f"p50 {k8s['p50_ms']:.1f} ms, p90 {k8s['p90_ms']:.1f} ms ({k8s['calls']} calls, "
                f"{k8s['api_server_requests_during_calls']} API server requests); "
                f"{k8s['x_local_p50']}x the local runtime's p50 in the same harness",
            )
        )
    for key, value in measures.items():
        if isinstance(value, dict) and "error" in value:
            out.append((key, f"failed: {value['error']}"))
    return out


def _text_table(head: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=False)]
    lines = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in (head, *body)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_text(result: dict[str, Any]) -> str:
    """The console report."""
    parts = [
        f"inferbox benchmark, {result['date']} — driver {result['driver']['name']}, "
        f"{result['duration_s']:g} s per run, "
        f"{result['machine']['cores']} cores ({result['machine']['cpu_model']})",
        "",
        _text_table(TABLE_HEAD, table_rows(result["rows"])),
        "",
    ]
    measured = measure_rows(result["measures"])
    if measured:
        parts += [_text_table(("measure", "value"), measured), ""]
    held = [(t["target"], t["observed"], _held_text(t["held"])) for t in result["targets"]]
    parts += [_text_table(("target", "observed", "held?"), held), ""]
    return "\n".join(parts)


def _md_table(head: tuple[str, ...], body: list[tuple[str, ...]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


MD_INTRO = """\
# Benchmarks

`python -m benchmarks` (from the repository root, with inferbox's venv python) serves one model — KServe's
scikit-learn example, `svm.SVC(gamma="scale")` fitted on iris — with KServe 0.21.0's Python `ModelServer`,
with MLServer 1.7.1 (`mlserver_sklearn.SKLearnModel`) and with inferbox, each at its default settings (only
ports set), and loads each with `wrk` posting one iris row. It also measures what inferbox's control plane
promises. This page is regenerated by every full run; the JSON of each run is kept in `benchmarks/results/`.

```bash
.venv/bin/python -m benchmarks                      # everything, 10 s per load run
.venv/bin/python -m benchmarks --only inferbox      # inferbox alone (no peers), e.g. while profiling
.venv/bin/python -m benchmarks --quick              # 1 s runs, fewer samples, no peers build (smoke test)
```

Options: `--duration S` (seconds per load run, default 10), `--only inferbox|kserve|mlserver`,
`--driver auto|wrk|python`, `--output DIR` (write the JSON and Markdown there instead of
`benchmarks/results/` and this page). The first run builds the peers' venvs under `benchmarks/.peers/`
(`kserve` and `mlserver`: their pins conflict in one venv) and reuses them afterwards.

## Method

- **Load runs**: `wrk -t1 -c1` and `wrk -t2 -c32`, `--latency`, a Lua script for the POST body and headers,
  after a 1 s warm-up at 32 connections that is not recorded. Endpoints: KServe V1 direct
  (`/v1/models/iris:predict`), MLServer V2 direct (`/v2/models/iris/infer`), inferbox's model endpoint
  direct (the model's `url`), inferbox's `/api/models/iris/predict` (tenant bearer token from
  `inferbox token`), the published URL on the gateway (`X-API-Key`), and `POST /api/validate-api-key`.
  Every server answers one checked request before its runs. "x KServe" is req/s over KServe direct's at
  the same connection count; "non-2xx" counts non-2xx answers and socket errors. Without wrk (a full
  run installs it with `apt-get install -y wrk`; `--quick` does not), a built-in asyncio HTTP/1.1 loop
  drives the load instead; it is client-bound, and the JSON and this page name the driver used.
- **Servers** run one after the other, each alone on the machine with the load generator. inferbox runs as
  `inferbox serve` with its own data dir (SQLite), `HOST=127.0.0.1`, `RATE_LIMIT_REQUESTS` and
  `RATE_LIMIT_BURST` at 1,000,000,000, `INFERBOX_SCALE_TO_ZERO_SECONDS=1`; iris has 1 replica and is
  published with every limit at 1,000,000,000.
- **Binary tensors vs JSON** (inferbox's model endpoint, V2 `/v2/models/iris/infer`): the same [32, 4]
  FP32 tensor as JSON `data`, and with the binary tensor extension both ways (raw little-endian bytes after
  the JSON header, `Inference-Header-Content-Length`, `binary_data_output: true`), by wrk like the rest.
- **gRPC** (`ModelInfer` of `inference.GRPCInferenceService`, one FP64 row in typed `fp64_contents`):
  inferbox's replica on the model's `statusDetails.grpcPort`, and MLServer's gRPC port. No gRPC load
  generator (such as `ghz`) is on the package registries, so the driver is a bounded asyncio `grpc.aio`
  loop (`benchmarks/grpc_load.py`): 1 or 32 workers, each on its own channel (connection), calling in a loop
  with a pre-serialised request for the run's duration. It is CPU-bound itself on 2 cores; the same loop
  drives both servers, so the ratio between them is what it measures.
- **create → Ready**: `POST /api/models`, then `GET /api/models/{name}` every 10 ms until `Ready` with a ready
  replica; median of 3 models (each deleted before the next).
- **First request after scale-to-zero**: a `minReplicas: 0` model, called once, then left until its replicas
  total 0; one timed `POST /api/models/{name}/predict`.
- **Idle RSS**: VmRSS (/proc) of `inferbox serve` and of iris's replica process, after 3 s without traffic
  and before the load runs (the value after the load runs is shown too). In brackets: its anonymous and
  file-backed parts (shared libraries count in full in every process) and PSS, for context.
- **GET /api/models with 1,000 models**: 1,000 replica processes cannot run on one machine, so the rows
  beyond the real models are inserted straight into the benchmark's SQLite store (SQLAlchemy,
  `inferbox.store.tables.Model`, `minReplicas: 0`); they list with status `Unknown`. p50 of 50 sequential
  calls as tenant-a.
- **GET /api/models over 1,000 InferenceServices** (`python -m benchmarks.kubernetes_list`): the
  Kubernetes runtime against kmock's emulator on loopback (benchmarks/kube_emulator.py), every model
  created through the API, then marked Ready by a simulated KServe; timed once the watch has brought every
  status into the cache. p50/p90 of 50 sequential calls, the API server requests made meanwhile (only the
  30 s resync's, never the listing's), and, for a ratio, the local runtime's listing of 1,000 rows in the
  same in-process harness at the same moment.
"""


def render_markdown(result: dict[str, Any]) -> str:
    """docs/benchmarks.md: the method, then this run's context, table, measures and targets."""
    m, v = result["machine"], result["versions"]
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    lines = [
        MD_INTRO,
        f"## Latest results ({result['date']})",
        "",
        f"- Command: `{result['command']}`",
        f"- Machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}; "
        f"1-minute load average {m.get('loadavg_1m_at_start')} at the start, "
        f"{m.get('loadavg_1m_at_end')} at the end",
        f"- Versions: {versions}",
        f"- Driver: {result['driver']['name']} ({result['driver']['version']}), "
        f"{result['duration_s']:g} s per run",
        "",
        _md_table(TABLE_HEAD, table_rows(result["rows"]), right_from=1),
        "",
    ]
    measured = measure_rows(result["measures"])
    if measured:
        lines += [_md_table(("measure", "value"), measured, right_from=2), ""]
    held = [(t["target"], t["observed"], _held_text(t["held"])) for t in result["targets"]]
    lines += ["### Targets", "", _md_table(("target", "observed", "held?"), held, right_from=3), ""]
    if result.get("llm"):
        from benchmarks import llm

        lines += [llm.markdown_section(result["llm"]), ""]
    if result.get("notes"):
        lines += ["### Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    return "\n".join(lines)


def write(result: dict[str, Any], results_dir: Path, markdown_path: Path) -> tuple[Path, Path]:
    """The JSON under `results_dir` (timestamped and latest.json) and the Markdown page."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").split("+")[0]
    payload = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    path = results_dir / f"{stamp}.json"
    path.write_text(payload)
    (results_dir / "latest.json").write_text(payload)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(render_markdown(result))
    return path, markdown_path
