"""A second process on the same store: publishing work done beside a running control plane.

One store has one owner of the local runtime (a second `inferbox serve` is refused at start), but the
store's guarantees (one winner per race, one valid key after rotations) must hold for any processes
that share it. This script is such a process: `python peer.py DATABASE_URL ACTION MODEL N` runs
`N` concurrent ACTIONs (rotate, publish, unpublish) on MODEL of tenant-a through `PublishingService`
itself, after printing "ready" and waiting for a line on stdin (so that both sides start together),
and prints one JSON line: {"results": [...]} with each call's key, or its HTTP-like status.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from inferbox.control.audit import Actor, AuditLog
from inferbox.control.errors import ControlError
from inferbox.control.events import EventBus
from inferbox.control.model_rows import ModelRecord
from inferbox.control.publishing import PublishingService
from inferbox.store import Store
from inferbox.store.tables import Model


def main() -> None:
    url, action, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = Store(url)
    audit = AuditLog(store)
    service = PublishingService(store, EventBus(), audit, "http://localhost:8080")
    with store.session() as session:
        row = session.scalar(select(Model).where(Model.namespace == "tenant-a", Model.name == name))
        assert row is not None
        model = ModelRecord.of(row)
    actor = Actor("peer", "tenant-a", "127.0.0.1")

    def one(_: int) -> Any:
        try:
            if action == "rotate":
                return service.rotate(model, 0, actor)["newApiKey"]
            if action == "publish":
                return service.publish(model, {}, actor, None)["publishedModel"]["apiKey"]
            service.unpublish(model, actor)
            return 200
        except ControlError as exc:
            return {"Conflict": 409, "NotFound": 404}[type(exc).__name__]

    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    audit.close()
    print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
    main()
