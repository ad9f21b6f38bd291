"""A model's downloaded copies: fetched once per generation, removed when no replica needs them.

Before a generation's replicas can start, its storageUri is fetched into the data dir (a local path is
used where it is). The fetch runs in the background, once per generation however often the supervisor
asks; its outcome is reported into the model: the path its replicas load, or the failure that makes the
model FailedToLoad (a download that ends after the spec moved on to another generation is ignored). A
generation's copy is removed once its last replica is gone, and every copy after the model is deleted.

Kept apart from the supervisor because it is the model's only slow I/O besides the replica processes,
and the only code that touches the model's files in the data dir.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

from inferbox import storage
from inferbox.blocking import in_thread
from inferbox.runtime.base import ModelSpec


class FetchingModel(Protocol):
    """What the downloads read of their model, and where they report a fetch's outcome."""

    spec: ModelSpec
    closing: bool
    failure: str | None
    model_path: Path | None

    def kick(self) -> None:
        """Reconcile again soon (replicas can start)."""

    def changed(self) -> None:
        """Something observable changed."""

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run `coro` in the background, cancelled when the model closes."""


class Downloads:
    """Fetches the current generation and removes the copies nothing uses any more."""

    def __init__(self, model: FetchingModel, data_dir: Path) -> None:
        self._model = model
        self._data_dir = data_dir
        # The generation being fetched, if any.
        self._fetching: int | None = None

    def ensure_fetched(self) -> None:
        """Start fetching the current generation, unless that is under way."""
        spec = self._model.spec
        if self._fetching == spec.generation:
            return
        self._fetching = spec.generation
        self._model.spawn_task(self._fetch(spec), f"fetch {spec.name}@{spec.generation}")

    def release(self, generation: int) -> None:
        """No replica of `generation` is left: remove its copy in the background."""
        self._model.spawn_task(self._remove(generation), f"remove {self._model.spec.name}@{generation}")

    def remove_all(self) -> None:
        """Forget the model's downloaded copies (after a delete). Blocking: run it in a thread."""
        spec = self._model.spec
        root = storage.download_dir(self._data_dir, spec.namespace, spec.name, spec.generation).parent
        if root.is_dir():
            shutil.rmtree(root, ignore_errors=True)

    async def _fetch(self, spec: ModelSpec) -> None:
        model = self._model
        dest = storage.download_dir(self._data_dir, spec.namespace, spec.name, spec.generation)
        try:
            path = await storage.fetch_async(spec.storage_uri, dest)
        except Exception as exc:  # StorageError, or whatever a download library raised
            if model.spec.generation == spec.generation:
                model.failure = str(exc)
                self._fetching = None
                model.changed()
            return
        if model.spec.generation == spec.generation and not model.closing:
            model.model_path = path
            self._fetching = None
            model.kick()
            model.changed()

    async def _remove(self, generation: int) -> None:
        spec = self._model.spec
        path = storage.download_dir(self._data_dir, spec.namespace, spec.name, generation)
        if path.is_dir():
            await in_thread(shutil.rmtree, path, True)
