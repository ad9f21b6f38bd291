"""Fixtures for the whole suite: store URLs (SQLite and PostgreSQL) and running control planes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support import POSTGRES_URL, RunningServer, postgres_url, settings_for, start_server

pytest_plugins = ["trained", "llm_models"]


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[Callable[[], str]]:
    """Makes a fresh schema per call in the test database, all dropped at the end of the run."""
    made: list[str] = []

    def make() -> str:
        name = f"ibx_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return name

    yield make
    if made:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inferbox.db'}"
    return postgres_url(request.getfixturevalue("postgres_schemas")())


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Starts control planes with given settings; stops them after the test."""
    servers: list[RunningServer] = []

    def make(database_url: str | None = None, **overrides: Any) -> RunningServer:
        sub = tmp_path / f"server{len(servers)}"
        settings = settings_for(sub, database_url, **overrides)
        server = start_server(settings)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., RunningServer], database_url: str) -> RunningServer:
    """A control plane on a fresh store, once on SQLite and once on PostgreSQL."""
    return make_server(database_url)


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
