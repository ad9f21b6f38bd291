"""Behaviour both runtimes share, run on each: validation, tenancy, error shapes and the bookkeeping of
publishing. A user's scripts must not see which backend runs. One control plane per runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import RunningServer


@pytest.fixture(scope="module", params=["local", "kubernetes"])
def either(request: pytest.FixtureRequest, sklearn_dir: Path) -> tuple[RunningServer, str]:
    """(control plane, a storageUri it can use)."""
    if request.param == "local":
        return request.getfixturevalue("module_servers")(), str(sklearn_dir)
    return request.getfixturevalue("k8s"), "s3://models/iris"


def model(name: str, uri: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "framework": "sklearn", "storageUri": uri, "minReplicas": 1, **fields}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"framework": "sklearn"}, "name"),
        ({"name": "Bad_Name", "framework": "sklearn", "storageUri": "URI"}, "name"),
        ({"name": "ok", "framework": "sklearn", "storageUri": "URI", "maxReplicas": 0}, "maxReplicas"),
        ({"name": "ok", "framework": "sklearn", "storageUri": "URI", "scaleTarget": -3}, "scaleTarget"),
    ],
)
def test_validation_errors_read_alike(
    either: tuple[RunningServer, str], body: dict[str, Any], fragment: str
) -> None:
    srv, uri = either
    with srv.tenant("shared-a") as c:
        r = c.post("/api/models", json={k: uri if v == "URI" else v for k, v in body.items()})
    assert r.status_code == 400, r.text
    assert set(r.json()) >= {"error", "details"}
    assert r.json()["error"] == "Invalid request format"
    assert fragment in r.json()["details"]


def test_tenancy_duplicates_and_publish_bookkeeping(either: tuple[RunningServer, str]) -> None:
    srv, uri = either
    with srv.tenant("shared-a") as c, srv.tenant("shared-b") as other:
        assert c.post("/api/models", json=model("books", uri)).status_code == 201
        dup = c.post("/api/models", json=model("books", uri))
        assert (dup.status_code, dup.json()["error"]) == (409, "Model already exists")
        assert other.get("/api/models/books").status_code == 404
        assert other.post("/api/models/books/publish", json={"config": {}}).status_code == 404

        pub = c.post("/api/models/books/publish", json={"config": {"rateLimiting": {"burstLimit": 3}}})
        assert pub.status_code == 201, pub.text
        published = pub.json()["publishedModel"]
        assert published["apiKey"].startswith("pk_live_")
        assert published["rateLimiting"]["burstLimit"] == 3
        again = c.post("/api/models/books/publish", json={"config": {}})
        assert (again.status_code, again.json()["error"]) == (409, "Model is already published")
        shown = c.get("/api/models/books/publish").json()
        assert shown["apiKey"] != published["apiKey"]  # masked after the first answer
        assert shown["externalPath"] == published["externalPath"]
        assert c.delete("/api/models/books/publish").status_code == 200
        gone = c.get("/api/models/books/publish")
        assert (gone.status_code, gone.json()["error"]) == (404, "Published model not found")
        assert c.delete("/api/models/books").status_code == 200
        assert c.get("/api/models/books").status_code == 404
