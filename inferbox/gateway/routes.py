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
from inferbox.ratelimit import Quota
from inferbox.store import Store
from inferbox.store.tables import Model, Publication

log = logging.getLogger("inferbox.gateway")

TRADITIONAL_SUFFIXES = {"/predict": "predict", "/infer": "infer"}
# Under the published path, and under its /v1, where the `openai` client (base_url = externalUrl/v1) calls.
OPENAI_SUFFIXES = {
    "/v1/chat/completions": "chat/completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/models": "models",
    "/chat/completions": "chat/completions",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/models": "models",
}


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
        """The route serving `path` on `host` and the action asked for: "" (metadata), "predict",
        "infer", or an OpenAI endpoint ("chat/completions", …)."""
        routes = self._routes
        candidates: list[tuple[str, str]] = [(path.rstrip("/") or "/", "")]
        for suffix, action in (*TRADITIONAL_SUFFIXES.items(), *OPENAI_SUFFIXES.items()):
            if path.endswith(suffix):
                candidates.append((path[: -len(suffix)], action))
        for base, action in candidates:
            for host_key in (host, ""):
                route = routes.get((host_key, base))
                if route is None:
                    continue
                suffixes = OPENAI_SUFFIXES if route.model_type == "openai" else TRADITIONAL_SUFFIXES
                if action == "" or action in suffixes.values():
                    return route, action
        return None
