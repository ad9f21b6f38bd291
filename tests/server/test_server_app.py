"""The ASGI app in-process, driven through the ASGI interface without a network: loading states,
lifespan, and the error shape. Uses a real scikit-learn model behind a loader that waits on a gate,
so the "still loading" window is deterministic."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inferbox.server.app import App, AppConfig, build_app
from inferbox.server.errors import ModelLoadError
from inferbox.server.frameworks import load_model
from inferbox.server.model import Model

pytestmark = pytest.mark.timeout(60)


async def call(app: App, method: str, path: str, body: bytes = b"") -> tuple[int, dict[bytes, bytes], Any]:
    """One HTTP request through the ASGI interface; returns status, headers and the decoded body."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    start, payload = sent
    raw = payload["body"]
    decoded = json.loads(raw) if dict(start["headers"])[b"content-type"] == b"application/json" else raw
    return start["status"], dict(start["headers"]), decoded


class Lifespan:
    """Runs the app's lifespan protocol in the background, like a server would."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.app({"type": "lifespan"}, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        assert (await self.outbox.get())["type"] == "lifespan.startup.complete"

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        assert (await self.outbox.get())["type"] == "lifespan.shutdown.complete"
        assert self.task is not None
        await self.task


def gated_app(sklearn_dir: Path, gate: threading.Event, loader: Callable[[], Model] | None = None) -> App:
    def load() -> Model:
        gate.wait(timeout=30)
        return (loader or (lambda: load_model("sklearn", sklearn_dir / "model.joblib")))()

    return build_app(AppConfig(name="iris", framework="sklearn", model_path=sklearn_dir), loader=load)


def test_loading_states(sklearn_dir: Path) -> None:
    async def scenario() -> None:
        gate = threading.Event()
        app = gated_app(sklearn_dir, gate)
        lifespan = Lifespan(app)
        await lifespan.start()
        status, _, body = await call(app, "GET", "/v2/health/live")
        assert (status, body) == (200, {"live": True})
        for method, path in [
            ("GET", "/v2/health/ready"),
            ("GET", "/v2/models/iris/ready"),
            ("GET", "/v1/models/iris"),
            ("GET", "/v2/models/iris"),
        ]:
            status, _, body = await call(app, method, path, b'{"instances": [[1, 2, 3, 4]]}')
            assert status == 503, path
            assert body == {"error": "model 'iris' is not ready"}
        assert (await call(app, "GET", "/v1/models"))[2] == {"models": ["iris"]}
        # An inference call during loading waits for the model (a caller that woke a replica from zero).
        early = asyncio.create_task(
            call(app, "POST", "/v1/models/iris:predict", b'{"instances": [[6.3, 3.3, 6.0, 2.5]]}')
        )
        await asyncio.sleep(0)
        assert not early.done()
        gate.set()
        await app.wait_loaded()
        assert (await early)[0::2] == (200, {"predictions": [2]})
        status, _, body = await call(app, "GET", "/v2/health/ready")
        assert (status, body) == (200, {"ready": True})
        status, _, body = await call(
            app, "POST", "/v1/models/iris:predict", b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
        )
        assert (status, body) == (200, {"predictions": [0]})
        await lifespan.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_load_failure_is_reported_not_raised(sklearn_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        (tmp_path / "model.joblib").write_bytes(b"garbage")
        gate = threading.Event()
        gate.set()
        app = gated_app(sklearn_dir, gate, loader=lambda: load_model("sklearn", tmp_path / "model.joblib"))
        reported: list[str] = []
        app.on_load_error = reported.append
        lifespan = Lifespan(app)
        await lifespan.start()
        with pytest.raises(ModelLoadError):
            await app.wait_loaded()
        assert reported and reported[0].startswith(f"cannot load {tmp_path / 'model.joblib'}: ")
        assert app.load_error == reported[0]
        status, _, body = await call(app, "GET", "/v2/health/ready")
        assert status == 503
        assert body["error"].startswith("model 'iris' failed to load: cannot load")
        await lifespan.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_request_body_limit(sklearn_dir: Path) -> None:
    async def scenario() -> None:
        config = AppConfig(name="iris", framework="sklearn", model_path=sklearn_dir, max_body_bytes=100)
        app = build_app(config, loader=lambda: load_model("sklearn", sklearn_dir / "model.joblib"))
        lifespan = Lifespan(app)
        await lifespan.start()
        await app.wait_loaded()
        chunks = [
            {"type": "http.request", "body": b'{"instances": [', "more_body": True},
            *({"type": "http.request", "body": b"[1, 2, 3, 4]," * 5, "more_body": True} for _ in range(5)),
            {"type": "http.request", "body": b"[1, 2, 3, 4]]}", "more_body": False},
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return chunks.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/models/iris:predict", "headers": []}
        await app(scope, receive, send)
        assert sent[0]["status"] == 413
        assert json.loads(sent[1]["body"]) == {"error": "request body is larger than 100 bytes"}
        # A chunked body under the limit is put back together.
        chunks[:] = [
            {"type": "http.request", "body": b'{"instances": [[5.1, 3.5,', "more_body": True},
            {"type": "http.request", "body": b" 1.4, 0.2]]}", "more_body": False},
        ]
        sent.clear()
        await app(scope, receive, send)
        assert sent[0]["status"] == 200
        assert json.loads(sent[1]["body"]) == {"predictions": [0]}
        await lifespan.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
