"""The Management Service API spec's own examples, verbatim, against a running control plane; and every
example the publish documentation prints, run as printed (curl in a shell, Python, JavaScript with
node) after putting in the key shown at publish.

The model is the spec's: a scikit-learn pipeline fitted on a DataFrame with `feature1` and `feature2`
(tests/trained.py). Only the storageUri differs from the spec (it names a bucket we do not have).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RunningServer, wait_for, wait_ready

pytestmark = pytest.mark.timeout(300)

KEY_PLACEHOLDER = "<your-api-key>"


@pytest.fixture(scope="module")
def srv(module_servers) -> RunningServer:
    # Room for the PUT example's two replicas and the documentation model's one, and no more.
    return module_servers(replica_slots=3)


@pytest.fixture(scope="module")
def my_model(srv: RunningServer, named_features_dir: Path) -> dict[str, Any]:
    """The spec's Create Model request, as tenant-a (which names its own tenant)."""
    body = {
        "name": "my-model",
        "framework": "sklearn",
        "storageUri": str(named_features_dir),
        "minReplicas": 1,
        "maxReplicas": 10,
        "scaleTarget": 80,
        "scaleMetric": "concurrency",
        "namespace": "tenant-a",
    }
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models", json=body)
        assert r.status_code == 201, r.text
        wait_ready(c, "my-model")
    return r.json()


def test_create_answers_as_the_spec_shows(my_model: dict[str, Any], named_features_dir: Path) -> None:
    assert my_model == {
        "message": "Model created successfully",
        "name": "my-model",
        "namespace": "tenant-a",
        "config": {
            "framework": "sklearn",
            "storageUri": str(named_features_dir),
            "minReplicas": 1,
            "maxReplicas": 10,
            "scaleTarget": 80,
            "scaleMetric": "concurrency",
        },
    }


def test_the_update_example_is_accepted_and_applied(srv: RunningServer, my_model: dict[str, Any]) -> None:
    with srv.tenant("tenant-a") as c:
        r = c.put("/api/models/my-model", json={"minReplicas": 2, "maxReplicas": 20, "scaleTarget": 70})
        assert r.status_code == 200, r.text
        config = r.json()["config"]
        assert (config["minReplicas"], config["maxReplicas"], config["scaleTarget"]) == (2, 20, 70)

        def two_ready() -> dict[str, Any] | None:
            details = c.get("/api/models/my-model").json()["statusDetails"]
            return details if details["replicas"]["ready"] == 2 else None

        details = wait_for(two_ready, timeout=60, interval=0.2)
        assert details["replicas"] == {"desired": 2, "ready": 2, "total": 2, "pending": 0}
        assert details["error"] is None
        # Past INFERBOX_MAX_REPLICAS (100 by default): refused, and nothing changes.
        too_many = c.put("/api/models/my-model", json={"maxReplicas": 101})
        assert too_many.status_code == 400
        assert too_many.json() == {
            "error": "Invalid request format",
            "details": "Field 'maxReplicas' must be at most 100 (INFERBOX_MAX_REPLICAS)",
        }
        assert c.get("/api/models/my-model").json()["maxReplicas"] == 20
        # Back to one replica: the documentation model below needs its slot.
        assert c.put("/api/models/my-model", json={"minReplicas": 1}).status_code == 200


def test_the_predict_example_with_dict_rows(srv: RunningServer, my_model: dict[str, Any]) -> None:
    body = {
        "inputData": {"instances": [{"feature1": 1.0, "feature2": 2.0}]},
        "connectionSettings": {"useCustom": False},
    }
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/my-model/predict", json=body)
        assert r.status_code == 200, r.text
        [prediction] = r.json()["predictions"]
        assert prediction in (0, 1, 2)
        missing = c.post(
            "/api/models/my-model/predict", json={"inputData": {"instances": [{"feature1": 1.0}]}}
        )
        assert missing.status_code == 400
        assert "missing feature 'feature2'" in missing.json()["details"]
        unknown = {"inputData": {"instances": [{"feature1": 1.0, "feature2": 2.0, "feature3": 0.0}]}}
        r = c.post("/api/models/my-model/predict", json=unknown)
        assert r.status_code == 400 and "unknown feature 'feature3'" in r.json()["details"]


def _run_shell(command: str) -> str:
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def _run_python(source: str, tmp_path: Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (source, done.stdout, done.stderr)
    return done.stdout


def _run_node(source: str, tmp_path: Path) -> str:
    node = shutil.which("node")
    assert node, "node is needed on PATH to run the JavaScript examples"
    script = tmp_path / "example.mjs"  # a module: the example awaits at the top level
    script.write_text(source)
    done = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (source, done.stdout, done.stderr)
    return done.stdout


def _total_requests(srv: RunningServer, name: str) -> int:
    with srv.tenant("tenant-a") as c:
        return int(c.get(f"/api/models/{name}/publish").json()["usage"]["totalRequests"])


def _run_every_example(srv: RunningServer, docs: dict[str, Any], key: str, tmp_path: Path) -> int:
    """Run every example in `docs` with `key` put in; returns how many predictions reached the model."""
    assert key.startswith("pk_live_") and "…" not in json.dumps(docs)
    filled = json.loads(json.dumps(docs).replace(KEY_PLACEHOLDER, key))
    assert filled["authHeaders"] == {"X-API-Key": key}
    sdk = filled["sdkExamples"]
    assert "predictions" in json.loads(_run_shell(sdk["curl"]))
    assert "'predictions'" in _run_python(sdk["python"], tmp_path)
    assert "predictions" in _run_node(sdk["javascript"], tmp_path)
    for example in filled["exampleRequests"]:
        r = httpx.request(
            example["method"], example["url"], headers=example["headers"], content=example["body"], timeout=30
        )
        assert r.status_code == 200, (example, r.text)
    # Metadata and health calls are free (docs/gateway.md): only predictions count in usage.
    return 3 + sum(example["method"] == "POST" for example in filled["exampleRequests"])


def test_every_documentation_example_runs_as_printed(
    srv: RunningServer, my_model: dict[str, Any], named_features_dir: Path, tmp_path: Path
) -> None:
    with srv.tenant("tenant-a") as c:
        create = {"name": "doc-model", "framework": "sklearn", "storageUri": str(named_features_dir)}
        assert c.post("/api/models", json=create).status_code == 201
        wait_ready(c, "doc-model")
        config = {"rateLimiting": {"requestsPerMinute": 1000, "requestsPerHour": 10000, "burstLimit": 1000}}
        published = c.post("/api/models/doc-model/publish", json={"config": config})
        assert published.status_code == 201, published.text
        shown = published.json()["publishedModel"]
        key = shown["apiKey"]
        # The one answer that shows the key holds it in its examples, and says so.
        assert shown["documentation"]["authHeaders"] == {"X-API-Key": key}
        assert "shown only in this answer" in shown["documentation"]["apiKeyNote"]
        got = c.get("/api/models/doc-model/publish").json()
        put = c.put("/api/models/doc-model/publish", json={"config": {"metadata": {"v": 2}}}).json()
    later = [got["documentation"], put["publishedModel"]["documentation"]]
    for docs in later:
        # Never the masked key (no gateway accepts it): the placeholder, and where the key was shown.
        assert docs["authHeaders"] == {"X-API-Key": KEY_PLACEHOLDER}
        assert key not in json.dumps(docs) and got["apiKey"] not in json.dumps(docs)
        assert "POST /api/models/doc-model/publish" in docs["apiKeyNote"]
    before = _total_requests(srv, "doc-model")
    calls = sum(_run_every_example(srv, d, key, tmp_path) for d in [shown["documentation"], *later])

    # Every call was admitted with the key and counted (a refused call is not).
    wait_for(lambda: _total_requests(srv, "doc-model") == before + calls, timeout=30)


def test_the_publish_and_update_examples(srv: RunningServer, my_model: dict[str, Any]) -> None:
    config = {
        "tenantId": "tenant-a",
        "modelType": "traditional",
        "externalPath": "/models/my-model",
        "publicHostname": "api.router.inference-in-a-box",
        "rateLimiting": {
            "requestsPerMinute": 100,
            "requestsPerHour": 5000,
            "tokensPerHour": 100000,
            "burstLimit": 10,
        },
        "authentication": {"requireApiKey": True, "allowedTenants": ["tenant-a", "tenant-b"]},
        "metadata": {"description": "My production model"},
    }
    with srv.tenant("tenant-a") as c:
        r = c.post("/api/models/my-model/publish", json={"config": config})
        assert r.status_code == 201, r.text
        assert r.json()["message"] == "Model published successfully"
        published = r.json()["publishedModel"]
        assert published["externalUrl"] == "https://api.router.inference-in-a-box/models/my-model"
        assert published["rateLimiting"] == config["rateLimiting"]
        key = published["apiKey"]
        # Until the name resolves to the gateway, the printed local test reaches it with a Host header.
        answer = json.loads(_run_shell(published["documentation"]["localTest"]["curl"]))
        assert len(answer["predictions"]) == 1
        update = {
            "config": {
                "tenantId": "tenant-a",
                "publicHostname": "api.router.inference-in-a-box",
                "rateLimiting": {"requestsPerMinute": 200, "requestsPerHour": 10000},
            }
        }
        r = c.put("/api/models/my-model/publish", json=update)
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "Published model updated successfully"
        assert r.json()["publishedModel"]["rateLimiting"] == {
            "requestsPerMinute": 200,
            "requestsPerHour": 10000,
            "tokensPerHour": 100000,
            "burstLimit": 10,
        }
        local = r.json()["publishedModel"]["documentation"]["localTest"]["curl"]
        assert KEY_PLACEHOLDER in local
        answer = json.loads(_run_shell(local.replace(KEY_PLACEHOLDER, key)))
        assert len(answer["predictions"]) == 1
