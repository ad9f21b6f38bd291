"""The peers inferbox is compared with: KServe 0.21.0's Python ModelServer and MLServer 1.7.1.

They cannot share one venv (their pins conflict), so each gets its own under benchmarks/.peers/ (git
ignored), built once and reused: a venv counts as built when its marker file names the same requirements
and its packages import at the pinned versions. A venv someone else built gets the marker on first use.
MLServer 1.7.1's worker pool fails on uvloop >= 0.22, hence the pin.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import Proc, Processes, free_port, wait_http

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
MARKER = ".inferbox-bench-ready"
KSERVE_SCRIPT = Path(__file__).resolve().parent / "kserve_iris.py"


@dataclass(frozen=True)
class PeerSpec:
    """A peer's venv: where, what to pip install, and a check that the install is what we pinned."""

    name: str
    requirements: tuple[str, ...]
    check: str

    @property
    def venv(self) -> Path:
        return PEERS_DIR / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


KSERVE = PeerSpec(
    "kserve",
    ("kserve==0.21.0", "scikit-learn"),
    "import importlib.metadata as m, kserve, sklearn, joblib; "
    "assert m.version('kserve') == '0.21.0', m.version('kserve')",
)
MLSERVER = PeerSpec(
    "mlserver",
    ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"),
    "import importlib.metadata as m, mlserver, mlserver_sklearn, sklearn; "
    "assert m.version('mlserver') == '1.7.1', m.version('mlserver'); "
    "assert m.version('mlserver-sklearn') == '1.7.1', m.version('mlserver-sklearn'); "
    "v = tuple(int(x) for x in m.version('uvloop').split('.')[:2]); assert v < (0, 22), v",
)
PEERS = {p.name: p for p in (KSERVE, MLSERVER)}


def _works(spec: PeerSpec) -> bool:
    if not spec.python.exists():
        return False
    done = subprocess.run([str(spec.python), "-c", spec.check], capture_output=True, timeout=300)
    return done.returncode == 0


def _marker_ok(spec: PeerSpec) -> bool:
    try:
        data = json.loads((spec.venv / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("requirements") == list(spec.requirements)


def _write_marker(spec: PeerSpec, how: str) -> None:
    data = {"requirements": list(spec.requirements), "how": how, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (spec.venv / MARKER).write_text(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time (two benchmark runs must not pip into the same venv at once)."""
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    with (PEERS_DIR / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(spec: PeerSpec, *, build: bool) -> Path | None:
    """The peer's python, building its venv first when it is missing (and `build`); None when unbuilt."""
    if _marker_ok(spec) and _works(spec):
        return spec.python
    if not build:
        return spec.python if _works(spec) else None
    with _build_lock():
        if _works(spec):
            _write_marker(spec, "found installed")
            return spec.python
        print(f"benchmarks: building {spec.venv} ({' '.join(spec.requirements)}); once only", flush=True)
        if not spec.python.exists():
            # From inferbox's venv python, `-m venv` makes a venv on the same base interpreter.
            subprocess.run([sys.executable, "-m", "venv", str(spec.venv)], check=True, timeout=600)
        subprocess.run(
            [str(spec.python), "-m", "pip", "install", "--disable-pip-version-check", *spec.requirements],
            check=True,
            timeout=3600,
        )
        if not _works(spec):
            raise RuntimeError(f"{spec.venv}: installed, but the check still fails: {spec.check}")
        _write_marker(spec, "built by benchmarks")
    return spec.python


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_kserve(procs: Processes, python: Path, model_dir: Path, logs: Path) -> tuple[Proc, str]:
    """KServe's ModelServer on free ports (HTTP, gRPC); returns it and its HTTP base URL once the model is
    ready."""
    http_port, grpc_port = free_port(), free_port()
    argv = [
        str(python),
        str(KSERVE_SCRIPT),
        "--model_name",
        "iris",
        "--model_dir",
        str(model_dir),
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(grpc_port),
    ]
    proc = procs.start("kserve", argv, log_path=logs / "kserve.log", env=_env())
    base = f"http://127.0.0.1:{http_port}"
    wait_http(f"{base}/v1/models/iris", proc, ok=lambda r: bool(r.json().get("ready")))
    return proc, base


def start_mlserver(
    procs: Processes, python: Path, model_file: Path, root: Path, logs: Path
) -> tuple[Proc, str, str]:
    """`mlserver start ROOT` with settings.json setting only the three ports and ROOT/iris holding
    model-settings.json (mlserver_sklearn.SKLearnModel) and the model; returns it, its HTTP base URL and
    its gRPC address (host:port)."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    model_dir = root / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / "model.joblib"
    if model_file.resolve() != target.resolve():
        target.write_bytes(model_file.read_bytes())
    settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}
    (root / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
    mlserver = python.parent / "mlserver"
    proc = procs.start(
        "mlserver", [str(mlserver), "start", str(root)], log_path=logs / "mlserver.log", env=_env()
    )
    base = f"http://127.0.0.1:{http_port}"
    wait_http(f"{base}/v2/models/iris/ready", proc)
    return proc, base, f"127.0.0.1:{grpc_port}"
