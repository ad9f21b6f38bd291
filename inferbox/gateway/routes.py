"""The gateway's route table: every publication with its keys, held in memory and reloaded from the
store after each change made in this process and every second for changes made elsewhere."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from inferbox.auth import apikeys
from inferbox.control.publish_config import PublishConfig
from inferbox.control.publishing import config_of
from inferbox.gateway.actions import Actions
from inferbox.ratelimit import Quota
from inferbox.store import Store
from inferbox.store.tables import Model, Publication

log = logging.getLogger("inferbox.gateway")

# External paths are at most this long (publish_config.check_external_path): longer prefixes of a
# request path cannot name a route, so matching never looks past it.
MAX_EXTERNAL_PATH = 200


@dataclass(frozen=True)
class KeyEntry:
    salt: str
    key_hash: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Route:
    """One publication as the gateway serves it: where, for whom, within which limits."""

    publication_id: int
    namespace: str
    model: str
    config: PublishConfig
    port: int | None
    keys: dict[str, KeyEntry] = field(default_factory=dict)
    created: int = 0  # the publication's creation, in µs: with the id, it names the publication's budgets

    @property
    def limit_id(self) -> str:
        """The name of this publication's rate-limit windows. SQLite may give a new publication the id
        of one deleted before it: with its creation time beside the id, it never inherits those windows."""
        return f"{self.publication_id}.{self.created}"

    @property
    def model_type(self) -> str:
        return self.config.modelType or "traditional"

    @property
    def host_key(self) -> str:
        return self.config.publicHostname or ""

    @property
    def external_path(self) -> str:
        return self.config.externalPath or ""

    @cached_property
    def actions(self) -> Actions:
        return Actions(self.model, self.model_type)

    @cached_property
    def allowed_tenants(self) -> frozenset[str]:
        return frozenset(self.config.authentication.allowedTenants)

    @cached_property
    def public(self) -> bool:
        return not self.config.authentication.requireApiKey and not self.allowed_tenants

    @cached_property
    def quotas(self) -> tuple[Quota, ...]:
        return self.config.rateLimiting.request_quotas()

    @cached_property
    def token_quota(self) -> Quota:
        return self.config.rateLimiting.token_quota()

    def key_matches(self, key: str, at: datetime) -> bool:
        lookup = apikeys.lookup_id(key)
        entry = self.keys.get(lookup) if lookup else None
        if entry is None or not apikeys.matches(key, entry.salt, entry.key_hash):
            return False
        return entry.expires_at is None or entry.expires_at > at


class RouteTable:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._routes: dict[tuple[str, str], Route] = {}
        self._by_key: dict[str, Route] = {}  # key lookup id → its route
        self._lock = threading.Lock()
        # Reloads (the periodic one and those after a change here) run one at a time, each reading and
        # assigning under it, so an older read can never overwrite a newer table.
        self._reloading = threading.Lock()

    def reload(self) -> None:
        with self._reloading:
            self._reload()

    def _reload(self) -> None:
        with self._store.session() as session:
            rows = session.execute(
                select(Publication, Model)
                .join(Model, Publication.model_id == Model.id)
                .options(selectinload(Publication.keys))
            ).all()
        routes = {}
        for pub, model in rows:
            route = Route(
                publication_id=pub.id,
                namespace=model.namespace,
                model=model.name,
                config=config_of(pub),
                port=model.port,
                keys={k.lookup_id: KeyEntry(k.salt, k.key_hash, k.expires_at) for k in pub.keys},
                created=round(pub.created_at.timestamp() * 1_000_000),
            )
            routes[(route.host_key, route.external_path)] = route
        by_key = {lookup: route for route in routes.values() for lookup in route.keys}
        with self._lock:
            self._routes, self._by_key = routes, by_key

    def find_key(self, key: str, at: datetime) -> Route | None:
        """The route a valid, unexpired API key belongs to; None for any other string."""
        lookup = apikeys.lookup_id(key)
        route = self._by_key.get(lookup) if lookup else None
        return route if route is not None and route.key_matches(key, at) else None

    def __len__(self) -> int:
        return len(self._routes)

    def match(self, host: str, path: str) -> tuple[Route, str] | None:
        """The route serving `path` on `host`, and the rest of the path under its externalPath ("" or
        "/..."). The longest externalPath that is a prefix of `path` at a segment boundary wins (so
        `/a` never serves `/ab`); at each length a route for `host` comes before one for any host."""
        routes = self._routes
        # Candidate prefixes: the whole path, then the path cut before each "/" (longest first).
        cuts = [len(path)] if len(path) <= MAX_EXTERNAL_PATH else []
        end = min(len(path), MAX_EXTERNAL_PATH + 1)
        cut = path.rfind("/", 0, end)
        while cut > 0:
            cuts.append(cut)
            cut = path.rfind("/", 0, cut)
        for cut in cuts:
            base = path[:cut]
            for host_key in (host, ""):
                route = routes.get((host_key, base))
                if route is not None:
                    return route, path[cut:]
        return None
