"""`python -m benchmarks`: build the peers once, train the model, run every server in turn, load each
endpoint, take the control-plane measures, and report (console, JSON, Markdown).

Servers run one at a time (KServe, then MLServer, then inferbox), each alone with the load generator, and
every process started is stopped in a `finally` (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks import grpc_load, inferbox_setup, iris, kubernetes_list, measures, peers, report
from benchmarks.drivers import Driver, Load, pick_driver
from benchmarks.procs import Processes, descendants, rss_mb

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
MARKDOWN = ROOT / "docs" / "benchmarks.md"
SYSTEMS = ("kserve", "mlserver", "inferbox")
SHAPES = ((1, 1), (32, 2))  # (connections, threads): wrk -t1 -c1 and -t2 -c32
LIST_TOTAL = 1000
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (default 10; 1 with --quick)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 s runs, fewer samples, no warm-up, no peers build (peers run only if already built)",
    )
    p.add_argument("--only", choices=SYSTEMS, default=None, help="run one system only")
    p.add_argument(
        "--driver",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when present (installed with apt-get unless --quick), else a Python loop",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write the JSON and the Markdown into this directory instead of benchmarks/results/ and docs/",
    )
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 1.0 if args.quick else 10.0
    if args.duration <= 0:
        p.error("--duration must be positive")
    return args


class Bench:
    """One benchmark run: its options, driver, scratch dir, processes and what it has measured so far."""

    def __init__(self, args: argparse.Namespace, driver: Driver, work: Path) -> None:
        self.args = args
        self.driver = driver
        self.work = work
        self.procs = Processes()
        self.rows: list[dict[str, Any]] = []
        self.measures: dict[str, Any] = {}
        self.notes: list[str] = []
        self.versions: dict[str, Any] = {
            "inferbox": importlib.metadata.version("inferbox"),
            "python": platform.python_version(),
            "scikit-learn (inferbox)": importlib.metadata.version("scikit-learn"),
        }
        self.errors: list[str] = []
        self.model_dir = work / "iris"
        self.machine = report.machine()
        self.versions.update(_git_state())

    # -- loads -----------------------------------------------------------------------------------------
    def check(self, load: Load) -> Any:
        """One request before the runs: it must answer 200, so that the runs time real predictions."""
        response = httpx.request(
            load.method,
            load.url,
            content=load.body,
            headers={"Content-Type": "application/json", **load.headers},
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f"{load.url} answered {response.status_code}: {response.text[:500]}")
        if "inference-header-content-length" in response.headers:  # binary tensors: the JSON header
            return json.loads(response.content[: int(response.headers["inference-header-content-length"])])
        return response.json()

    def run_load(
        self,
        row_id: str,
        label: str,
        load: Load,
        *,
        shapes: Sequence[tuple[int, int]] = SHAPES,
        predict: bool = True,
    ) -> None:
        """Check, warm up (full runs), then one timed run per (connections, threads)."""
        answer = self.check(load)
        if not self.args.quick:
            self.driver.run(load, connections=32, threads=2, duration=1.0)
        for connections, threads in shapes:
            result = self.driver.run(
                load, connections=connections, threads=threads, duration=self.args.duration
            )
            row = {"id": row_id, "label": label, "url": load.url, "predict": predict, **result.to_json()}
            row["answer"] = answer
            self.rows.append(row)
            print(
                f"  {label:<34} c{connections:<3} {result.rps:>10,.0f} req/s"
                f"  p50 {result.p50_ms or 0:7.2f} ms  p99 {result.p99_ms or 0:7.2f} ms"
                f"  non-2xx {result.non_2xx + result.socket_errors}",
                flush=True,
            )

    def run_grpc(self, row_id: str, label: str, load: grpc_load.GrpcLoad) -> None:
        """As `run_load`, for a gRPC endpoint driven by the grpc.aio loop (see grpc_load.py)."""
        answer = grpc_load.call_once(load)
        if not self.args.quick:
            grpc_load.run(load, connections=32, duration=1.0)
        for connections, _threads in SHAPES:
            result = grpc_load.run(load, connections=connections, duration=self.args.duration)
            row = {
                "id": row_id,
                "label": label,
                "url": f"grpc://{load.address}{load.method}",
                "predict": True,
            }
            row.update(result.to_json())
            row["answer"] = {"bytes": len(answer)}
            self.rows.append(row)
            print(
                f"  {label:<34} c{connections:<3} {result.rps:>10,.0f} req/s"
                f"  p50 {result.p50_ms or 0:7.2f} ms  p99 {result.p99_ms or 0:7.2f} ms"
                f"  non-OK {result.non_2xx + result.socket_errors}",
                flush=True,
            )

    def measure(self, key: str, fn: Callable[[], dict[str, Any]]) -> None:
        """Record `fn()`'s numbers under `key`, or its error (the other measures still run)."""
        try:
            self.measures[key] = fn()
        except Exception as exc:
            traceback.print_exc()
            self.measures[key] = {"error": f"{type(exc).__name__}: {exc}"}
            self.errors.append(f"{key}: {exc}")

    # -- the model -------------------------------------------------------------------------------------
    def peer_model_dir(self, name: str, python: Path) -> Path:
        """inferbox's model.joblib when the peer has the same scikit-learn; else a copy trained (same data,
        same parameters) by the peer's own python, since pickles do not cross scikit-learn versions."""
        found = iris.versions(python)
        self.versions[name] = found.get(name)
        self.versions[f"scikit-learn ({name})"] = found.get("scikit-learn")
        self.versions[f"python ({name})"] = found.get("python")
        if name == "mlserver":
            self.versions["mlserver-sklearn"] = found.get("mlserver-sklearn")
            self.versions["uvloop (mlserver)"] = found.get("uvloop")
        if found.get("scikit-learn") == self.versions["scikit-learn (inferbox)"]:
            self.notes.append(
                f"{name} unpickles the same model.joblib as inferbox "
                f"(scikit-learn {found.get('scikit-learn')} in both)."
            )
            return self.model_dir
        own = self.work / f"iris-{name}"
        iris.train(python, own)
        self.notes.append(
            f"{name} has scikit-learn {found.get('scikit-learn')} "
            f"(inferbox {self.versions['scikit-learn (inferbox)']}): "
            "its copy of the model was trained by its own python, same data and parameters."
        )
        return own

    # -- the systems -----------------------------------------------------------------------------------
    def run_kserve(self) -> None:
        python = peers.ensure(peers.KSERVE, build=not self.args.quick)
        if python is None:
            self.notes.append("KServe skipped: its venv is not built (--quick never builds it).")
            return
        model_dir = self.peer_model_dir("kserve", python)
        print("kserve: starting ModelServer", flush=True)
        proc, base = peers.start_kserve(self.procs, python, model_dir, self.work / "logs")
        try:
            time.sleep(1.0)
            self.measures["kserve_idle_rss_mb"] = rss_mb(proc.pid)
            load = Load(f"{base}/v1/models/iris:predict", iris.v1_body())
            self.run_load("kserve-direct", "KServe V1 direct", load)
        finally:
            self.procs.stop(proc)

    def run_mlserver(self) -> None:
        python = peers.ensure(peers.MLSERVER, build=not self.args.quick)
        if python is None:
            self.notes.append("MLServer skipped: its venv is not built (--quick never builds it).")
            return
        model_dir = self.peer_model_dir("mlserver", python)
        print("mlserver: starting mlserver start", flush=True)
        proc, base, grpc_address = peers.start_mlserver(
            self.procs, python, model_dir / "model.joblib", self.work / "mlserver", self.work / "logs"
        )
        try:
            time.sleep(1.0)
            tree = [proc.pid, *descendants(proc.pid)]
            self.measures["mlserver_idle_rss_mb"] = sum(rss_mb(p) or 0.0 for p in tree)
            load = Load(f"{base}/v2/models/iris/infer", iris.v2_body())
            self.run_load("mlserver-direct", "MLServer V2 direct", load)
            self.run_grpc(
                "mlserver-grpc-direct",
                "MLServer gRPC direct",
                grpc_load.GrpcLoad(grpc_address, GRPC_INFER, iris.grpc_infer_request()),
            )
        finally:
            self.procs.stop(proc)

    def run_inferbox(self) -> None:
        print("inferbox: starting inferbox serve", flush=True)
        ibx = inferbox_setup.start(self.procs, self.work)
        try:
            storage_uri = f"file://{self.model_dir}"
            ibx.deploy("iris", storage_uri, min_replicas=1, max_replicas=1)
            model = ibx.wait_ready("iris")
            published = ibx.publish("iris")
            key = published["apiKey"]
            settle = 1.0 if self.args.quick else 3.0
            self.measure("idle_rss", lambda: measures.idle_rss(ibx, "iris", settle))
            ibx.proc.remember_descendants()

            loads = [
                (
                    "inferbox-model-direct",
                    "inferbox model endpoint direct",
                    Load(model["url"], iris.v1_body()),
                ),
                (
                    "inferbox-api-predict",
                    "inferbox /api/models/iris/predict",
                    Load(
                        f"{ibx.base_url}/api/models/iris/predict",
                        iris.api_body(),
                        {"Authorization": f"Bearer {ibx.tenant_token}"},
                    ),
                ),
                (
                    "inferbox-published",
                    "inferbox published URL",
                    Load(f"{published['externalUrl']}/predict", iris.v1_body(), {"X-API-Key": key}),
                ),
                (
                    # What kserve's and Triton's V2 clients send to a published model.
                    "inferbox-published-v2",
                    "inferbox published V2 JSON",
                    Load(
                        f"{published['externalUrl']}/v2/models/iris/infer",
                        iris.v2_body(),
                        {"X-API-Key": key},
                    ),
                ),
            ]
            for row_id, label, load in loads:
                self.run_load(row_id, label, load)
            v2_url = model["url"].replace("/v1/models/iris:predict", "/v2/models/iris/infer")
            binary_body, binary_headers = iris.v2_binary_batch()
            pair = (
                (
                    "inferbox-v2-json-batch",
                    "inferbox V2 JSON 32x4 FP32 direct",
                    Load(v2_url, iris.v2_json_batch()),
                ),
                (
                    "inferbox-v2-binary-batch",
                    "inferbox V2 binary 32x4 FP32 direct",
                    Load(v2_url, binary_body, binary_headers),
                ),
            )
            # Interleaved per connection count: the two are compared with each other, so they should
            # meet the same background load (a shared machine drifts over a minute).
            for shape in SHAPES:
                for row_id, label, load in pair:
                    self.run_load(row_id, label, load, shapes=(shape,))
            grpc_host = urlsplit(model["url"]).hostname
            self.run_grpc(
                "inferbox-grpc-direct",
                "inferbox gRPC direct",
                grpc_load.GrpcLoad(
                    f"{grpc_host}:{model['statusDetails']['grpcPort']}", GRPC_INFER, iris.grpc_infer_request()
                ),
            )
            validate = Load(f"{ibx.base_url}/api/validate-api-key", b"{}", {"X-API-Key": key})
            self.run_load(
                "validate-api-key", "POST /api/validate-api-key", validate, shapes=((32, 2),), predict=False
            )
            self.measure("rss_after_load", lambda: measures.idle_rss(ibx, "iris", settle))

            self.measure(
                "create_to_ready",
                lambda: measures.create_to_ready(ibx, storage_uri, 1 if self.args.quick else 3),
            )
            self.measure(
                "scale_to_zero_first_request",
                lambda: measures.first_request_after_scale_to_zero(ibx, storage_uri),
            )
            self.measure(
                "list_models",
                lambda: measures.list_models(ibx, storage_uri, LIST_TOTAL, 10 if self.args.quick else 50),
            )
            # The same listing on the Kubernetes runtime, answered from its watch cache (the emulator
            # runs in this process; see benchmarks/kubernetes_list.py).
            self.measure(
                "kubernetes_list",
                lambda: kubernetes_list.measure(
                    100 if self.args.quick else LIST_TOTAL, 10 if self.args.quick else 50
                ),
            )
            listing = self.measures.get("list_models", {})
            if "rows_inserted_directly" in listing:
                self.notes.append(
                    f"GET /api/models: {listing['rows_inserted_directly']} of the "
                    f"{listing['models_listed']} models "
                    "were inserted straight into the SQLite store (no replica process; they list as Unknown)."
                )
        finally:
            ibx.close()
            self.procs.stop(ibx.proc)

    # -- the whole run ---------------------------------------------------------------------------------
    def run(self) -> None:
        iris.train(sys.executable, self.model_dir)
        systems = [self.args.only] if self.args.only else list(SYSTEMS)
        for system in systems:
            getattr(self, f"run_{system}")()

    def result(self, command: str) -> dict[str, Any]:
        report.add_ratios(self.rows)
        for row in self.rows:
            if not row["predict"]:
                row["ratio_to_kserve"] = None
        return {
            "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "command": command,
            "quick": self.args.quick,
            "only": self.args.only,
            "duration_s": self.args.duration,
            "machine": {**self.machine, "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
            "versions": self.versions,
            "driver": {"name": self.driver.name, "version": self.driver.version()},
            "rows": self.rows,
            "measures": self.measures,
            "targets": report.targets(self.rows, self.measures),
            "notes": self.notes,
            "errors": self.errors,
        }


def _git_state() -> dict[str, Any]:
    """The checkout being measured: HEAD and whether inferbox/ has uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "inferbox"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"inferbox commit": (head + (" + uncommitted changes" if dirty else "")) if head else None}


def _command(argv: Sequence[str]) -> str:
    python = sys.executable
    try:
        rel = os.path.relpath(python, Path.cwd())
        python = rel if not rel.startswith("..") else python
    except ValueError:
        pass
    return shlex.join([python, "-m", "benchmarks", *argv])


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run_llm(bench: Bench, quick: bool) -> dict[str, Any] | None:
    """Generation on the tiny GPT-2 (benchmarks/llm.py), when the huggingface extra is installed."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        bench.notes.append("Language models: not measured (pip install 'inferbox[huggingface]').")
        return None
    from benchmarks import llm

    try:
        return llm.run(quick)
    except Exception as exc:
        bench.errors.append(f"llm: {type(exc).__name__}: {exc}")
        return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    driver = pick_driver(args.driver, may_install=not args.quick)
    work = Path(tempfile.mkdtemp(prefix="ibx-bench-"))
    bench = Bench(args, driver, work)
    bench.notes.append(
        f"{os.cpu_count()} cores shared by the load generator and the server under test; "
        "servers ran one at a time."
    )
    if driver.name == "python":
        bench.notes.append(
            "Driver: the Python load loop (wrk was not available); its numbers are client-bound."
        )
    if args.only in (None, "kserve", "mlserver"):
        bench.notes.append(
            "KServe and MLServer listen on 0.0.0.0 (their defaults; only ports were set); every request of "
            "the benchmark goes to 127.0.0.1. inferbox runs with HOST=127.0.0.1."
        )
    llm_result: dict[str, Any] | None = None
    try:
        bench.run()
        if args.only in (None, "inferbox"):
            llm_result = _run_llm(bench, args.quick)
    except KeyboardInterrupt:
        print("benchmarks: interrupted; stopping what was started", file=sys.stderr, flush=True)
        bench.procs.stop_all()
        return 130
    except Exception as exc:
        traceback.print_exc()
        bench.errors.append(f"{type(exc).__name__}: {exc}")
        for proc in bench.procs.history:
            print(f"--- {proc.name} log (last lines) ---\n{proc.log_tail()}", file=sys.stderr)
    finally:
        bench.procs.stop_all()
        if bench.errors:
            print(f"benchmarks: logs kept in {work / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    result = bench.result(_command(argv))
    if llm_result is not None:
        result["llm"] = llm_result
    print()
    print(report.render_text(result))
    complete = not args.quick and args.only is None and not bench.errors
    if args.output is not None:
        paths = report.write(result, args.output, args.output / "benchmarks.md")
    elif complete:
        paths = report.write(result, RESULTS_DIR, MARKDOWN)
    else:
        # Partial runs (--quick, --only, errors) keep their JSON but leave latest.json and the docs alone.
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = result["date"].replace(":", "").split("+")[0]
        path = RESULTS_DIR / f"{stamp}-partial.json"
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        paths = (path,)
    print("written: " + ", ".join(str(p) for p in paths))
    if bench.errors:
        print("errors:\n  " + "\n  ".join(bench.errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
