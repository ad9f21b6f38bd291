"""API fuzzing with schemathesis against /api/openapi.json, as the admin and as a tenant.

Schemathesis generates requests from the document (examples, boundary values of every declared
constraint, and random data, valid and not) and checks every answer: no server error, only documented
status codes and content types, bodies that match their schemas, invalid data refused, the Allow header
of a 405 right. The run is bounded (a fixed seed, a few examples per operation) so that CI stays
quick; `INFERBOX_FUZZ_EXAMPLES=200` runs a larger one by hand. One check is left out: "valid data is
accepted" (positive_data_acceptance) cannot hold for rules a schema does not state (an admin must name
a namespace, kubectl takes read verbs only), which the API refuses with 400.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import RunningServer, deploy, publish

EXAMPLES = int(os.environ.get("INFERBOX_FUZZ_EXAMPLES", "12"))
SEED = 20261201


def fuzz(srv: RunningServer, token: str, report: Path) -> dict[str, Any]:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis (st) is a test dependency"
    subprocess.run(
        [
            st,
            "run",
            f"{srv.base_url}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--phases",
            "examples,coverage,fuzzing",
            "--exclude-checks",
            "positive_data_acceptance",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(report.read_text())


@pytest.mark.timeout(600)  # ~1,000 requests and their checks; minutes on a busy 2-core machine
@pytest.mark.parametrize("who", ["admin", "tenant"])
def test_fuzzing_finds_no_server_error_and_no_schema_violation(
    module_servers, sklearn_dir: Path, tmp_path: Path, who: str
) -> None:
    # Generous API limits (a fuzzer is one busy caller) and a small replica cap (it will ask for many).
    srv = module_servers(rate_limit_requests=10**9, rate_limit_burst=10**8, max_replicas=2)
    deploy(srv, sklearn_dir)
    publish(srv)
    token = srv.admin_token() if who == "admin" else srv.tenant_token("tenant-a")
    result = fuzz(srv, token, tmp_path / "report.json")
    cases = result["test_cases"]
    print(f"\nschemathesis as {who}: {cases['generated']} requests, {len(result['failures'])} failures")
    assert result["complete"] and result["operations"]["tested"] == result["operations"]["total"] >= 25
    assert cases["generated"] >= 20 * result["operations"]["total"]
    assert result["failures"] == [] and result["errors"] == [], json.dumps(result["failures"])[:3000]
    # The fuzzer got past authentication: most operations saw more than 401/403. A tenant sees only 403
    # from the admin's eight routes, and from the four whose bodies name a tenant, which the fuzzer's
    # random names never are (a foreign tenant named is 403, issue 12).
    assert len(result["warnings"]["missing_auth"]) <= (1 if who == "admin" else 12), result["warnings"]
