"""Where the gateway sends an admitted call: a replica picked by the runtime in this process, or, for a
standalone gateway, the model's stable address (which the local runtime spreads over its replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from inferbox.gateway.routes import Route
from inferbox.runtime import ModelNotRunning, Runtime


class Upstream(Protocol):
    def connect(self, route: Route, timeout: float) -> AbstractAsyncContextManager[str]:
        """Yield the base URL of a replica that takes this one call."""


class RuntimeUpstream:
    """Least-outstanding-requests over the ready replicas of the runtime in this process; waits for a
    replica (scaling up from zero) when none is ready."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def connect(self, route: Route, timeout: float) -> AbstractAsyncContextManager[str]:
        return self._runtime.connect(route.namespace, route.model, timeout)


class DirectUpstream:
    """The model's stable address from the store, for a gateway that runs without a runtime."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host

    @asynccontextmanager
    async def connect(self, route: Route, timeout: float) -> AsyncIterator[str]:
        if route.port is None:
            raise ModelNotRunning(f"model {route.namespace}/{route.model} has no address yet", retry_after=5)
        yield f"http://{self._host}:{route.port}"
