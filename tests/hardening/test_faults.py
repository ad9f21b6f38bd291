"""A small run of `python -m benchmarks.faults`, judged from its JSON report: real `inferbox serve` and
`inferbox gateway` processes under load while the model's replica is SIGKILLed, serve is stopped
(SIGTERM) and killed (SIGKILL) and restarted, Redis stops and PostgreSQL refuses connections for a while.

It checks the policies those faults test: no request hung; nothing in the store was lost and the API key
still works; the store counted no more requests than were answered 200, and fewer by at most what the
SIGKILL of serve may lose (its gateway's 200s of the last 1.5 s); every gateway recovered after every
fault; and each fault really happened (a new replica pid, refusals at the serve's gateway while it was
down, 503s at both gateways while Redis was down, 503 from the API while the store was down).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATEWAYS = ("serve", "standalone")
FAULTS = ["replica_sigkill", "serve_sigterm", "serve_sigkill", "redis_outage", "store_outage"]


def run_small(tmp_path: Path) -> tuple[int, str, dict[str, Any]]:
    """Runs the benchmark in small mode; returns its exit code, its output and its report. An overrun
    gets SIGTERM first, so that the benchmark stops what it started."""
    report, output = tmp_path / "faults.json", tmp_path / "faults.out"
    argv = [sys.executable, "-m", "benchmarks.faults", "--small", "--json", str(report)]
    with output.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=150)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    text = output.read_text(errors="replace")
    assert report.exists(), text
    return code, text, json.loads(report.read_text())


def non_200(stat: dict[str, Any]) -> int:
    return int(stat["requests"] - stat["ok"])


@pytest.mark.timeout(180)
def test_inferbox_survives_the_faults_of_a_small_run(tmp_path: Path) -> None:
    code, output, report = run_small(tmp_path)
    faults = {f["name"]: f for f in report["faults"]}
    assert list(faults) == FAULTS, output

    assert report["hung"] == 0, output
    assert report["store"]["lost"] == [], output
    assert all(report["store"]["key_works"].values()), report["store"]["key_works"]
    usage = report["usage"]
    assert usage["counted"] <= usage["admitted"], usage
    assert usage["admitted"] - usage["counted"] <= usage["loss_bound"], usage
    for fault in report["faults"]:
        for gateway in GATEWAYS:
            assert fault["recovery_s"][gateway] is not None, (fault["name"], gateway, output)

    replica = faults["replica_sigkill"]["details"]
    assert replica["new_pid"] != replica["killed_pid"]
    for name in ("serve_sigterm", "serve_sigkill"):
        assert non_200(faults[name]["requests"]["serve"]) > 0, faults[name]["requests"]
        assert faults[name]["details"]["old_processes_left_running"] == [], faults[name]["details"]
    # The SIGKILL came while serve's gateway was answering: the loss bound is not vacuous.
    assert usage["loss_bound"] > 0, usage
    redis = faults["redis_outage"]
    for gateway in GATEWAYS:
        assert redis["requests"][gateway]["failures"].get("503", 0) > 0, redis["requests"]
    assert redis["details"]["api_status_during"] == 200
    store = faults["store_outage"]
    assert store["details"]["api_status_during"] == 503
    for gateway in GATEWAYS:
        during = store["during"][gateway]
        assert during["ok"] > 0 and during["failures"] == {}, during

    assert report["problems"] == [], report["problems"]
    assert code == 0, output
