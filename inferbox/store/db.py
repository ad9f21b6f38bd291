"""The engine, sessions and migrations of the store (SQLite by default, PostgreSQL via DATABASE_URL)."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")

# What the store raises when it cannot be reached or is too busy to answer (an outage, not a bug).
STORE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)

# Alembic's command API is not safe to run twice at once in one process (it swaps module globals).
_migrate_lock = threading.Lock()
# The key of PostgreSQL's advisory lock that serializes migrations across processes ("ibx" in ASCII).
_MIGRATION_LOCK_ID = 0x696278


def affected(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: its cursor's row count, which decides races."""
    return cast("CursorResult[Any]", result).rowcount


def _private_file(path: Path) -> None:
    """Create the SQLite file (and its directory) readable by its owner only: it holds password hashes
    and every tenant's configuration. SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.stat().st_uid == os.getuid():
        path.chmod(0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Store:
    """Owns the engine and hands out sessions; `migrate()` brings the schema to the newest revision."""

    def __init__(self, url: str) -> None:
        self._sqlite_path: Path | None = None
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[-1].split("?", 1)[0]
            if path and path != ":memory:":
                self._sqlite_path = Path(path)
                _private_file(self._sqlite_path)
            # As many pooled connections as the request thread pool has threads (AnyIO's 40), so that
            # busy moments reuse connections instead of opening (and re-running the pragmas) each time.
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 10}, pool_size=40, max_overflow=10
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision. Several processes may start at once on one store:
        the first migrates, the others wait for it (an advisory lock on PostgreSQL, a file lock beside
        a SQLite file) and then find nothing to do."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with _migrate_lock, self._migration_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self._sqlite_path is None:
            yield
            return
        fd = os.open(f"{self._sqlite_path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        self.engine.dispose()
