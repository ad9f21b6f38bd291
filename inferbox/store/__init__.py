"""The SQL store: tables, sessions and migrations."""

from inferbox.store.db import Store

__all__ = ["Store"]
