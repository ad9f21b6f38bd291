"""Fixtures of the hardening suite: a Redis of the tests' own that they may stop and start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()
