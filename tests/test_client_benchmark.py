"""`python -m benchmarks.clients` keeps working: a 1 s run with the Python load loop must measure every
client through its proxy and the replica directly, with no refused or failed request. No speed is
asserted: the numbers are reported by the benchmark, never checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ROWS = ("httpx", "aiohttp", "inferbox")


def test_client_benchmark_measures_every_client(tmp_path: Path) -> None:
    out = tmp_path / "clients.json"
    argv = [sys.executable, "-m", "benchmarks.clients", "--duration", "1", "--connections", "4"]
    argv += ["--driver", "python", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    result = json.loads(out.read_text())
    rows = {row["id"]: row for row in result["rows"]}
    assert set(rows) == {"direct", *CLIENT_ROWS}
    # Every client is measured: the test extra installs them all (aiohttp included), so none is skipped.
    for row_id in ("direct", *CLIENT_ROWS):
        row = rows[row_id]
        assert "skipped" not in row, row
        assert "error" not in row, row
        assert row["requests"] > 0, row
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0, row
        assert row["answer"] == {"predictions": [1]}, row
    assert result["load"]["driver"] == "python"
    assert result["machine"]["cores"] and result["versions"]["uvicorn"]
    assert "benchmarks.clients" in result["command"]
