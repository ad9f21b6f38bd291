"""An install without the pytorch and huggingface extras, as its users see it.

The test extra installs torch and transformers, so the control plane runs here as a process that
cannot see them (tests/hiding.py); the replicas it starts inherit that. Its frameworks listing marks
both unavailable with what to install, a create naming them is a 400 with the same sentence, and the
frameworks it has still deploy and answer.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hiding import env_hiding
from support import ADMIN_PASSWORD, INFERBOX, IRIS_ROW, base_env, serving, wait_ready

pytestmark = pytest.mark.timeout(120)

PYTORCH = "framework 'pytorch' needs the optional extra: pip install 'inferbox[pytorch]'"
HUGGINGFACE = "framework 'huggingface' needs the optional extra: pip install 'inferbox[huggingface]'"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory, sklearn_dir: Path) -> Iterator[httpx.Client]:
    """A tenant's client of a control plane process for which torch and transformers are not installed."""
    tmp = tmp_path_factory.mktemp("no-extras")
    env = env_hiding(
        "torch",
        "transformers",
        base=base_env(
            tmp,
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            INFERBOX_MODEL_ROOT=str(sklearn_dir.parent),
            # Generous limits: waiting for Ready polls the API.
            RATE_LIMIT_REQUESTS="100000",
            RATE_LIMIT_BURST="10000",
        ),
    )
    with serving(env) as (base, _proc):
        login = httpx.post(f"{base}/api/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {login.json()['token']}"}
        created = httpx.post(f"{base}/api/admin/tenants", json={"name": "tenant-a"}, headers=admin)
        assert created.status_code == 201, created.text
        # `inferbox token` signs with the secret the server keeps in the same data dir.
        token = subprocess.run(
            [*INFERBOX, "token", "--tenant", "tenant-a"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            yield c


def test_frameworks_lists_the_missing_extras_as_unavailable(tenant: httpx.Client) -> None:
    r = tenant.get("/api/frameworks")
    assert r.status_code == 200
    listed = {f["name"]: (f["available"], f["extra"], f["reason"]) for f in r.json()["frameworks"]}
    assert listed == {
        "sklearn": (True, None, None),
        "xgboost": (True, None, None),
        "lightgbm": (True, None, None),
        "onnx": (True, None, None),
        "pytorch": (False, "pytorch", PYTORCH),
        "huggingface": (False, "huggingface", HUGGINGFACE),
    }


def test_create_naming_a_missing_extra_is_400_and_the_rest_still_serve(
    tenant: httpx.Client, sklearn_dir: Path
) -> None:
    for framework, sentence in (("pytorch", PYTORCH), ("huggingface", HUGGINGFACE)):
        body = {"name": "m", "framework": framework, "storageUri": f"file://{sklearn_dir}"}
        r = tenant.post("/api/models", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "Invalid request format"
        assert sentence in r.json()["details"]
    assert tenant.get("/api/models").json() == {"models": []}
    # A framework of the base install deploys, and its replica (started blind to torch too) answers.
    body = {"name": "iris", "framework": "sklearn", "storageUri": f"file://{sklearn_dir}"}
    assert tenant.post("/api/models", json=body).status_code == 201
    wait_ready(tenant, "iris")
    r = tenant.post("/api/models/iris/predict", json={"inputData": {"instances": [IRIS_ROW]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [2]}
    assert tenant.delete("/api/models/iris").status_code == 200
