"""The SQL store: tables, sessions and migrations."""

from inferbox.store.db import STORE_UNAVAILABLE, Store, affected

__all__ = ["STORE_UNAVAILABLE", "Store", "affected"]
