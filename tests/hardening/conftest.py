"""Fixtures of the hardening suite: servers shared per module, callers from chosen loopback addresses,
and a Redis of the tests' own that they may stop and start."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import RedisServer, RunningServer, settings_for, start_server


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningServer]]:
    """Starts control planes that live for the whole module (a deploy costs a second; most tests here
    need one model, not a fresh one each)."""
    servers: list[RunningServer] = []

    def make(database_url: str | None = None, **overrides: Any) -> RunningServer:
        settings = settings_for(tmp_path_factory.mktemp("server"), database_url, **overrides)
        server = start_server(settings)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()
