"""Publishing: a model's public route, its API keys, its limits and its usage.

The gateway serves what is stored here. After every change the service tells its listeners (the
gateway's route table in this process) synchronously, so that an unpublished route or a rotated-out key
stops working on the very next call.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from inferbox.api.errors import bad_request, conflict, not_found
from inferbox.auth import apikeys
from inferbox.control import events as ev
from inferbox.control.audit import FAILURE, SUCCESS, Actor, AuditLog
from inferbox.control.events import EventBus
from inferbox.control.publishing_docs import documentation
from inferbox.control.tenants import label_problem
from inferbox.store import Store
from inferbox.store.tables import ApiKey, Model, Publication, Usage
from inferbox.timefmt import iso, now

log = logging.getLogger("inferbox.publishing")

MODEL_TYPES = ("traditional", "openai")
RESERVED_PREFIXES = ("/api", "/health", "/metrics", "/ws")
ACTION_SUFFIXES = ("/predict", "/infer", "/chat/completions", "/completions", "/embeddings", "/models")
LIMIT_DEFAULTS = {
    "requestsPerMinute": 100,
    "requestsPerHour": 5000,
    "tokensPerHour": 100000,
    "burstLimit": 10,
}
# Every limit is a whole number from 1 to a billion (and fits the store's 32-bit columns).
MAX_LIMIT = 1_000_000_000
MAX_METADATA_BYTES = 16 * 1024
MAX_GRACE_SECONDS = 7 * 24 * 3600
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._~\-/]+$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class PublishConfig:
    model_type: str
    external_path: str
    public_hostname: str | None
    requests_per_minute: int
    requests_per_hour: int
    tokens_per_hour: int
    burst_limit: int
    require_api_key: bool
    allowed_tenants: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def _object(value: Any, field_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"Field '{field_name}' must be an object")
    return value


def _positive_int(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise bad_request(f"Field '{field_name}' must be a positive integer")
    if value > MAX_LIMIT:
        raise bad_request(f"Field '{field_name}' must be at most {MAX_LIMIT:,}")
    return value


def check_external_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise bad_request("Field 'config.externalPath' must be a non-empty string")
    if not path.startswith("/"):
        raise bad_request("Field 'config.externalPath' must start with '/'")
    if ".." in path.split("/"):
        raise bad_request("Field 'config.externalPath' must not contain '..'")
    if "//" in path:
        raise bad_request("Field 'config.externalPath' must not contain '//'")
    if len(path) > 200 or not _PATH_CHARS.match(path):
        raise bad_request(
            "Field 'config.externalPath' may hold only letters, digits and . _ ~ - / (200 at most)"
        )
    path = path.rstrip("/") or "/"
    if path == "/":
        raise bad_request("Field 'config.externalPath' must not be the root path")
    for prefix in RESERVED_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            raise bad_request(f"Field 'config.externalPath' must not use the reserved prefix {prefix}")
    # A path ending in an action would shadow another route's action (`/models/x/predict`).
    for suffix in ACTION_SUFFIXES:
        if path.endswith(suffix):
            raise bad_request(f"Field 'config.externalPath' must not end with {suffix}: the gateway adds it")
    return path


def check_hostname(host: Any, gateway_host: str | None = None) -> str | None:
    if host is None or host == "":
        return None
    if not isinstance(host, str):
        raise bad_request("Field 'config.publicHostname' must be a string")
    if "://" in host or "/" in host or ":" in host or "@" in host:
        raise bad_request("Field 'config.publicHostname' must be a DNS name: no scheme, port or path")
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels):
        raise bad_request("Field 'config.publicHostname' must be a DNS name like api.example.com")
    if labels[-1].isdigit():  # 127.0.0.1 and friends: an address, not a name (no TLD is all digits)
        raise bad_request("Field 'config.publicHostname' must be a DNS name, not an IP address")
    if gateway_host and name == gateway_host:
        # Routes on the gateway's own host are the host-less ones: a hostname route there would shadow them.
        raise bad_request("Field 'config.publicHostname' must not be the gateway's own host; omit it instead")
    return name


def validate_config(
    config: dict[str, Any],
    *,
    model: Model,
    base: PublishConfig | None = None,
    gateway_host: str | None = None,
) -> PublishConfig:
    """A full, valid configuration from a request's `config` merged over `base` (on update) or over the
    defaults (on publish). 400 naming the field otherwise."""
    model_type = config.get("modelType")
    if model_type is None:
        model_type = (
            base.model_type if base else ("openai" if model.framework == "huggingface" else "traditional")
        )
    if model_type not in MODEL_TYPES:
        raise bad_request(f"Field 'config.modelType' must be one of {', '.join(MODEL_TYPES)}")
    if "externalPath" in config:
        path = check_external_path(config["externalPath"])
    else:
        path = base.external_path if base else f"/models/{model.name}"
    hostname = (
        check_hostname(config["publicHostname"], gateway_host)
        if "publicHostname" in config
        else (base.public_hostname if base else None)
    )

    limits_in = _object(config.get("rateLimiting"), "config.rateLimiting")
    current = (
        {
            "requestsPerMinute": base.requests_per_minute,
            "requestsPerHour": base.requests_per_hour,
            "tokensPerHour": base.tokens_per_hour,
            "burstLimit": base.burst_limit,
        }
        if base
        else dict(LIMIT_DEFAULTS)
    )
    limits = {k: _positive_int(limits_in.get(k, v), f"config.rateLimiting.{k}") for k, v in current.items()}
    if limits["requestsPerMinute"] > limits["requestsPerHour"]:
        raise bad_request("Field 'config.rateLimiting.requestsPerMinute' must not exceed requestsPerHour")

    auth_in = _object(config.get("authentication"), "config.authentication")
    require = auth_in.get("requireApiKey", base.require_api_key if base else True)
    if not isinstance(require, bool):
        raise bad_request("Field 'config.authentication.requireApiKey' must be true or false")
    allowed_in = auth_in.get("allowedTenants", list(base.allowed_tenants) if base else [])
    if not isinstance(allowed_in, list) or not all(isinstance(t, str) for t in allowed_in):
        raise bad_request("Field 'config.authentication.allowedTenants' must be a list of tenant names")
    # Names are not checked against the tenants (that would tell a tenant which others exist): the
    # gateway admits a caller only when its tenant exists and is listed.
    for tenant in allowed_in:
        if label_problem(tenant):
            raise bad_request(
                f"Field 'config.authentication.allowedTenants': '{tenant}' is not a tenant name"
            )

    metadata = _object(config.get("metadata", base.metadata if base else {}), "config.metadata")
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise bad_request(f"Field 'config.metadata' must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return PublishConfig(
        model_type=model_type,
        external_path=path,
        public_hostname=hostname,
        requests_per_minute=limits["requestsPerMinute"],
        requests_per_hour=limits["requestsPerHour"],
        tokens_per_hour=limits["tokensPerHour"],
        burst_limit=limits["burstLimit"],
        require_api_key=require,
        allowed_tenants=tuple(dict.fromkeys(allowed_in)),
        metadata=metadata,
    )


def config_of(pub: Publication) -> PublishConfig:
    return PublishConfig(
        model_type=pub.model_type,
        external_path=pub.external_path,
        public_hostname=pub.public_hostname,
        requests_per_minute=pub.requests_per_minute,
        requests_per_hour=pub.requests_per_hour,
        tokens_per_hour=pub.tokens_per_hour,
        burst_limit=pub.burst_limit,
        require_api_key=pub.require_api_key,
        allowed_tenants=tuple(pub.allowed_tenants or ()),
        metadata=dict(pub.metadata_ or {}),
    )


def _apply(pub: Publication, cfg: PublishConfig) -> None:
    pub.model_type = cfg.model_type
    pub.external_path = cfg.external_path
    pub.public_hostname = cfg.public_hostname
    pub.host_key = cfg.public_hostname or ""
    pub.requests_per_minute = cfg.requests_per_minute
    pub.requests_per_hour = cfg.requests_per_hour
    pub.tokens_per_hour = cfg.tokens_per_hour
    pub.burst_limit = cfg.burst_limit
    pub.require_api_key = cfg.require_api_key
    pub.allowed_tenants = list(cfg.allowed_tenants)
    pub.metadata_ = cfg.metadata


class PublishingService:
    """Publishes models. Blocking (it talks to the store): call it from a worker thread. `listeners`
    are called after every change; the gateway in this process reloads its routes there."""

    def __init__(self, store: Store, events: EventBus, audit: AuditLog, gateway_url: str) -> None:
        self.store = store
        self.events = events
        self.audit = audit
        self.gateway_url = gateway_url.rstrip("/")
        self.gateway_host = (urlsplit(self.gateway_url).hostname or "").lower() or None
        self.listeners: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # -- views -----------------------------------------------------------------------------------
    def external_url(self, pub: Publication) -> str:
        if pub.public_hostname:
            return f"https://{pub.public_hostname}{pub.external_path}"
        return f"{self.gateway_url}{pub.external_path}"

    def view(
        self, pub: Publication, model: Model, *, api_key: str | None = None, docs: bool = True
    ) -> dict[str, Any]:
        """The spec's publishedModel. `api_key` is the full key, given only by publish and rotate."""
        active = next((k for k in pub.keys if k.expires_at is None), None)
        shown_key = api_key or (active.masked if active else None)
        usage = pub.usage
        body: dict[str, Any] = {
            "modelName": model.name,
            "namespace": model.namespace,
            "tenantId": pub.tenant_id,
            "modelType": pub.model_type,
            "externalUrl": self.external_url(pub),
            "externalPath": pub.external_path,
            "publicHostname": pub.public_hostname,
            "apiKey": shown_key,
            "rateLimiting": {
                "requestsPerMinute": pub.requests_per_minute,
                "requestsPerHour": pub.requests_per_hour,
                "tokensPerHour": pub.tokens_per_hour,
                "burstLimit": pub.burst_limit,
            },
            "authentication": {
                "requireApiKey": pub.require_api_key,
                "allowedTenants": list(pub.allowed_tenants),
            },
            "metadata": pub.metadata_ or {},
            "status": pub.status,
            "createdAt": iso(pub.created_at),
            "updatedAt": iso(pub.updated_at),
            "usage": {
                "totalRequests": usage.total_requests if usage else 0,
                "requestsToday": (usage.requests_today if usage and usage.day == now().date() else 0),
                "tokensUsed": usage.tokens_used if usage else 0,
                "lastAccessTime": iso(usage.last_access_time) if usage else None,
            },
        }
        if docs:
            body["documentation"] = documentation(
                model_type=pub.model_type,
                external_url=self.external_url(pub),
                gateway_url=self.gateway_url,
                public_hostname=pub.public_hostname,
                api_key=shown_key or "<your-api-key>",
                example_input=pub.example_input,
            )
        return body

    def _load(self, model: Model) -> Publication | None:
        with self.store.session() as session:
            return session.scalar(
                select(Publication)
                .where(Publication.model_id == model.id)
                .options(selectinload(Publication.keys), selectinload(Publication.usage))
            )

    def get(self, model: Model) -> dict[str, Any]:
        pub = self._load(model)
        if pub is None:
            raise not_found("Published model", f"Model '{model.name}' is not published")
        return self.view(pub, model)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        stmt = (
            select(Publication, Model)
            .join(Model, Publication.model_id == Model.id)
            .options(selectinload(Publication.keys), selectinload(Publication.usage))
            .order_by(Model.namespace, Model.name)
        )
        if namespace is not None:
            stmt = stmt.where(Model.namespace == namespace)
        with self.store.session() as session:
            rows = session.execute(stmt).all()
        return [self.view(pub, model, docs=False) for pub, model in rows]

    # -- changes ---------------------------------------------------------------------------------
    def publish(self, model: Model, config: dict[str, Any], actor: Actor, example: Any) -> dict[str, Any]:
        """`example` is a request body's rows that fit the model, for the documentation."""
        cfg = validate_config(config, model=model, gateway_host=self.gateway_host)
        key, stored = apikeys.generate()
        stamp = now()
        pub = Publication(
            model_id=model.id,
            tenant_id=model.namespace,
            status="active",
            created_at=stamp,
            updated_at=stamp,
            example_input=example,
        )
        _apply(pub, cfg)
        pub.keys = [
            ApiKey(
                lookup_id=stored.lookup_id,
                salt=stored.salt,
                key_hash=stored.key_hash,
                masked=stored.masked,
                created_at=stamp,
            )
        ]
        pub.usage = Usage(total_requests=0, requests_today=0, tokens_used=0, day=stamp.date())
        try:
            with self.store.session() as session:
                if session.scalar(select(Publication.id).where(Publication.model_id == model.id)) is not None:
                    raise conflict("Model is already published", f"'{model.name}' has a publication; use PUT")
                clash = session.scalar(
                    select(Publication.id).where(
                        Publication.host_key == (cfg.public_hostname or ""),
                        Publication.external_path == cfg.external_path,
                    )
                )
                if clash is not None:
                    raise conflict("External path already in use", self._clash(cfg))
                session.add(pub)
        except IntegrityError:
            # Two publishes raced past the checks: the unique constraints decided.
            self.audit.record(actor, "publish.create", FAILURE, target=model.name, tenant=model.namespace)
            raise conflict("Model is already published", "a concurrent publish won") from None
        except Exception:
            self.audit.record(actor, "publish.create", FAILURE, target=model.name, tenant=model.namespace)
            raise
        self._changed()
        self.audit.record(
            actor,
            "publish.create",
            SUCCESS,
            target=model.name,
            tenant=model.namespace,
            details={"externalPath": cfg.external_path, "publicHostname": cfg.public_hostname},
        )
        self.events.publish(
            ev.PUBLICATION_PUBLISHED,
            model.namespace,
            model.name,
            {"externalPath": cfg.external_path, "publicHostname": cfg.public_hostname},
        )
        return {
            "message": "Model published successfully",
            "publishedModel": self.view(pub, model, api_key=key),
        }

    @staticmethod
    def _clash(cfg: PublishConfig) -> str:
        host = cfg.public_hostname or "the default host"
        return f"{cfg.external_path} on {host} is already published by another model"

    def _locked(self, session: Session, model: Model, stamp: datetime) -> Publication:
        """The model's publication, locked for this transaction (404 when there is none).

        The lock is taken by writing the row before reading it (a row lock on PostgreSQL, the database's
        write lock on SQLite, where SELECT ... FOR UPDATE does not exist), so a concurrent rotation or
        update waits here and then reads what the first one committed: one read-modify-write at a time
        per publication, in every process that shares the store."""
        locked = session.execute(
            update(Publication).where(Publication.model_id == model.id).values(updated_at=stamp)
        ).rowcount
        pub = (
            session.scalar(
                select(Publication)
                .where(Publication.model_id == model.id)
                .options(selectinload(Publication.keys), selectinload(Publication.usage))
            )
            if locked
            else None
        )
        if pub is None:
            raise not_found("Published model", f"Model '{model.name}' is not published")
        return pub

    def update(self, model: Model, config: dict[str, Any], actor: Actor) -> dict[str, Any]:
        with self.store.session() as session:
            pub = self._locked(session, model, now())
            cfg = validate_config(config, model=model, base=config_of(pub), gateway_host=self.gateway_host)
            if (cfg.public_hostname, cfg.external_path) != (pub.public_hostname, pub.external_path):
                clash = session.scalar(
                    select(Publication.id).where(
                        Publication.host_key == (cfg.public_hostname or ""),
                        Publication.external_path == cfg.external_path,
                        Publication.id != pub.id,
                    )
                )
                if clash is not None:
                    raise conflict("External path already in use", self._clash(cfg))
            _apply(pub, cfg)
            pub.updated_at = now()
        self._changed()
        self.audit.record(
            actor,
            "publish.update",
            SUCCESS,
            target=model.name,
            tenant=model.namespace,
            details={"fields": sorted(config)},
        )
        self.events.publish(ev.PUBLICATION_UPDATED, model.namespace, model.name, {"fields": sorted(config)})
        return {"message": "Published model updated successfully", "publishedModel": self.view(pub, model)}

    def unpublish(self, model: Model, actor: Actor) -> None:
        if not self._remove(model):
            raise not_found("Published model", f"Model '{model.name}' is not published")
        self._announce_unpublished(model, actor)

    def unpublish_deleted_model(self, model: Model, actor: Actor) -> None:
        """A model is being deleted: take its publication down with it, if it has one."""
        if self._remove(model):
            self._announce_unpublished(model, actor)

    def _remove(self, model: Model) -> bool:
        with self.store.session() as session:
            removed = (
                session.execute(delete(Publication).where(Publication.model_id == model.id)).rowcount > 0
            )
        if removed:
            self._changed()
        return removed

    def _announce_unpublished(self, model: Model, actor: Actor) -> None:
        self.audit.record(actor, "publish.delete", SUCCESS, target=model.name, tenant=model.namespace)
        self.events.publish(ev.PUBLICATION_UNPUBLISHED, model.namespace, model.name, {})

    def rotate(self, model: Model, grace_seconds: int, actor: Actor) -> dict[str, Any]:
        if grace_seconds < 0 or grace_seconds > MAX_GRACE_SECONDS:
            raise bad_request(f"Query 'gracePeriodSeconds' must be between 0 and {MAX_GRACE_SECONDS}")
        key, stored = apikeys.generate()
        stamp = now()
        with self.store.session() as session:
            pub = self._locked(session, model, stamp)
            # Serialized by the row lock: only the key that was active a moment ago gets the grace
            # period; every older one (still in an earlier grace period) goes now. So after any number of
            # concurrent rotations exactly the newest key is valid, plus its predecessor when asked.
            for old in list(pub.keys):
                if grace_seconds and old.expires_at is None:
                    old.expires_at = stamp + timedelta(seconds=grace_seconds)
                else:
                    session.delete(old)
            session.add(
                ApiKey(
                    publication_id=pub.id,
                    lookup_id=stored.lookup_id,
                    salt=stored.salt,
                    key_hash=stored.key_hash,
                    masked=stored.masked,
                    created_at=stamp,
                )
            )
        self._changed()
        self.audit.record(
            actor,
            "publish.rotateKey",
            SUCCESS,
            target=model.name,
            tenant=model.namespace,
            details={"gracePeriodSeconds": grace_seconds},
        )
        self.events.publish(
            ev.PUBLICATION_KEY_ROTATED, model.namespace, model.name, {"gracePeriodSeconds": grace_seconds}
        )
        return {"message": "API key rotated successfully", "newApiKey": key, "updatedAt": iso(stamp)}
