"""Publishing: a model's public route, its API keys, its limits and its usage.

The gateway serves what is stored here. After every change the service tells its listeners (the
gateway's route table in this process) synchronously, so that an unpublished route or a rotated-out key
stops working on the very next call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from inferbox import storage
from inferbox.auth import apikeys
from inferbox.control import events as ev
from inferbox.control.audit import FAILURE, SUCCESS, Actor, AuditLog
from inferbox.control.errors import Conflict, InvalidField, NotFound
from inferbox.control.events import EventBus
from inferbox.control.model_rows import ModelRecord
from inferbox.control.publish_config import PublishConfig
from inferbox.control.publishing_docs import documentation
from inferbox.control.validation import validated
from inferbox.store import Store, affected
from inferbox.store.tables import ApiKey, Model, Publication, Usage, UsageBucket
from inferbox.timefmt import iso, now

log = logging.getLogger("inferbox.publishing")

MAX_GRACE_SECONDS = 7 * 24 * 3600
# The columns of a publication that hold its config, by the config's field names.
_COLUMNS = {
    "modelType": "model_type",
    "externalPath": "external_path",
    "publicHostname": "public_hostname",
    "rateLimiting": "rate_limiting",
    "authentication": "authentication",
    "metadata": "metadata_",
}


# The tasks a Hugging Face model is served with the OpenAI API for (an unknown task is taken for one:
# what people publish from the Hub is mostly language models); others are predicted with V1/V2.
OPENAI_TASKS = frozenset({None, "text-generation", "text2text-generation", "feature-extraction"})


def model_task(model: ModelRecord) -> str | None:
    """A Hugging Face model's task as the model server takes it: its `args.task`, else read from a
    local model's directory (remote storage is not fetched for this); None when unknown."""
    uri = model.config.storage_uri
    if model.config.framework != "huggingface":
        return None
    if model.config.args.task is not None:
        return model.config.args.task
    if not storage.is_local(uri):
        return None
    from inferbox.server.frameworks.huggingface import task_from_config

    try:
        return task_from_config(storage.local_path(uri))
    except ValueError:
        return None


def default_model_type(model: ModelRecord) -> str:
    """`openai` for text-generation and embedding models, else `traditional`."""
    if model.config.framework != "huggingface":
        return "traditional"
    return "openai" if model_task(model) in OPENAI_TASKS else "traditional"


def _typed(patch: dict[str, Any], model: ModelRecord) -> dict[str, Any]:
    """A `modelType` given as "" asks for the model's default, as one left out does on publish."""
    if patch.get("modelType") == "":
        return {**patch, "modelType": default_model_type(model)}
    return patch


def config_of(pub: Publication) -> PublishConfig:
    """The config a stored publication holds (its JSON parts filled in with today's defaults)."""
    return PublishConfig.model_validate(
        {name: getattr(pub, column) for name, column in _COLUMNS.items() if getattr(pub, column) is not None}
    )


def _store(pub: Publication, cfg: PublishConfig) -> None:
    values = cfg.model_dump()
    for name, column in _COLUMNS.items():
        setattr(pub, column, values[name])
    pub.host_key = cfg.publicHostname or ""


def _not_published(model: ModelRecord) -> NotFound:
    return NotFound("Published model", f"Model '{model.name}' is not published")


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
    def external_url(self, cfg: PublishConfig) -> str:
        if cfg.publicHostname:
            return f"https://{cfg.publicHostname}{cfg.externalPath}"
        return f"{self.gateway_url}{cfg.externalPath}"

    def view(
        self, pub: Publication, model: ModelRecord, *, api_key: str | None = None, docs: bool = True
    ) -> dict[str, Any]:
        """The spec's publishedModel. `api_key` is the full key, given only by publish and rotate."""
        cfg = config_of(pub)
        active = next((k for k in pub.keys if k.expires_at is None), None)
        shown_key = api_key or (active.masked if active else None)
        usage = pub.usage
        body: dict[str, Any] = {
            "modelName": model.name,
            "namespace": model.namespace,
            "tenantId": pub.tenant_id,
            "modelType": cfg.modelType,
            "externalUrl": self.external_url(cfg),
            "externalPath": cfg.externalPath,
            "publicHostname": cfg.publicHostname,
            "apiKey": shown_key,
            **cfg.model_dump(include={"rateLimiting", "authentication", "metadata"}),
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
                model_type=cfg.modelType or "traditional",
                external_url=self.external_url(cfg),
                gateway_url=self.gateway_url,
                public_hostname=cfg.publicHostname,
                # Never the masked key: no gateway accepts it, so no example could run with it.
                api_key=api_key,
                example_input=pub.example_input,
                model_name=model.name,
                openai_endpoint=(
                    "embeddings" if model_task(model) == "feature-extraction" else "chat/completions"
                ),
            )
        return body

    def get(self, model: ModelRecord) -> dict[str, Any]:
        with self.store.session() as session:
            pub = session.scalar(
                select(Publication)
                .where(Publication.model_id == model.id)
                .options(selectinload(Publication.keys), selectinload(Publication.usage))
            )
        if pub is None:
            raise _not_published(model)
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
        return [self.view(pub, ModelRecord.of(model), docs=False) for pub, model in rows]

    # -- configs ---------------------------------------------------------------------------------
    def _config(self, base: PublishConfig, patch: dict[str, Any]) -> PublishConfig:
        """`patch` (a request's set fields) over `base`, validated as a whole; InvalidField names the
        first problem under `config.`."""
        cfg = validated(PublishConfig, base.merged(patch), prefix=("config",))
        if self.gateway_host and cfg.publicHostname == self.gateway_host:
            # Routes on the gateway's own host are the host-less ones: a hostname route would shadow them.
            raise InvalidField(
                "Field 'config.publicHostname' must not be the gateway's own host; omit it instead"
            )
        return cfg

    @staticmethod
    def defaults(model: ModelRecord) -> PublishConfig:
        """What a publish that names nothing gets."""
        return PublishConfig(modelType=default_model_type(model), externalPath=f"/models/{model.name}")

    @staticmethod
    def _clash(cfg: PublishConfig) -> str:
        host = cfg.publicHostname or "the default host"
        return f"{cfg.externalPath} on {host} is already published by another model"

    def _check_route(self, session: Session, cfg: PublishConfig, own_id: int | None = None) -> None:
        stmt = select(Publication.id).where(
            Publication.host_key == (cfg.publicHostname or ""), Publication.external_path == cfg.externalPath
        )
        if own_id is not None:
            stmt = stmt.where(Publication.id != own_id)
        if session.scalar(stmt) is not None:
            raise Conflict(self._clash(cfg), "External path already in use")

    # -- changes ---------------------------------------------------------------------------------
    def publish(
        self, model: ModelRecord, patch: dict[str, Any], actor: Actor, example: Any
    ) -> dict[str, Any]:
        """`patch`: the request's config fields; `example`: rows that fit the model, for the docs."""
        cfg = self._config(self.defaults(model), _typed(patch, model))
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
        _store(pub, cfg)
        pub.keys = [_key_row(stored, stamp)]
        pub.usage = Usage(total_requests=0, requests_today=0, tokens_used=0, day=stamp.date())
        try:
            with self.store.session() as session:
                if session.scalar(select(Publication.id).where(Publication.model_id == model.id)) is not None:
                    raise Conflict(f"'{model.name}' has a publication; use PUT", "Model is already published")
                self._check_route(session, cfg)
                session.add(pub)
        except IntegrityError:
            # Two publishes raced past the checks: the unique constraints decided.
            self.audit.record(actor, "publish.create", FAILURE, target=model.name, tenant=model.namespace)
            raise Conflict("a concurrent publish won", "Model is already published") from None
        except Exception:
            self.audit.record(actor, "publish.create", FAILURE, target=model.name, tenant=model.namespace)
            raise
        self._changed()
        where = {"externalPath": cfg.externalPath, "publicHostname": cfg.publicHostname}
        self.audit.record(
            actor, "publish.create", SUCCESS, target=model.name, tenant=model.namespace, details=where
        )
        self.events.publish(ev.PUBLICATION_PUBLISHED, model.namespace, model.name, where)
        return {
            "message": "Model published successfully",
            "publishedModel": self.view(pub, model, api_key=key),
        }

    def _locked(self, session: Session, model: ModelRecord, stamp: datetime) -> Publication:
        """The model's publication, locked for this transaction (NotFound when there is none).

        The lock is taken by writing the row before reading it (a row lock on PostgreSQL, the database's
        write lock on SQLite, where SELECT ... FOR UPDATE does not exist), so a concurrent rotation or
        update waits here and then reads what the first one committed: one read-modify-write at a time
        per publication, in every process that shares the store."""
        locked = affected(
            session.execute(
                update(Publication).where(Publication.model_id == model.id).values(updated_at=stamp)
            )
        )
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
            raise _not_published(model)
        return pub

    def update(self, model: ModelRecord, patch: dict[str, Any], actor: Actor) -> dict[str, Any]:
        with self.store.session() as session:
            pub = self._locked(session, model, now())
            cfg = self._config(config_of(pub), _typed(patch, model))
            if (cfg.publicHostname, cfg.externalPath) != (pub.public_hostname, pub.external_path):
                self._check_route(session, cfg, own_id=pub.id)
            _store(pub, cfg)
        self._changed()
        fields = {"fields": sorted(patch)}
        self.audit.record(
            actor, "publish.update", SUCCESS, target=model.name, tenant=model.namespace, details=fields
        )
        self.events.publish(ev.PUBLICATION_UPDATED, model.namespace, model.name, fields)
        return {"message": "Published model updated successfully", "publishedModel": self.view(pub, model)}

    def unpublish(self, model: ModelRecord, actor: Actor) -> None:
        if not self._remove(model):
            raise _not_published(model)
        self._announce_unpublished(model, actor)

    def unpublish_deleted_model(self, model: ModelRecord, actor: Actor) -> None:
        """A model is being deleted: take its publication down with it, if it has one."""
        if self._remove(model):
            self._announce_unpublished(model, actor)

    def _remove(self, model: ModelRecord) -> bool:
        with self.store.session() as session:
            pub_id = session.scalar(select(Publication.id).where(Publication.model_id == model.id))
            removed = (
                affected(session.execute(delete(Publication).where(Publication.model_id == model.id))) > 0
            )
            # Its usage history goes with it: SQLite may give the next publication the same id.
            session.execute(delete(UsageBucket).where(UsageBucket.publication_id == pub_id))
        if removed:
            self._changed()
        return removed

    def _announce_unpublished(self, model: ModelRecord, actor: Actor) -> None:
        self.audit.record(actor, "publish.delete", SUCCESS, target=model.name, tenant=model.namespace)
        self.events.publish(ev.PUBLICATION_UNPUBLISHED, model.namespace, model.name, {})

    def rotate(self, model: ModelRecord, grace_seconds: int, actor: Actor) -> dict[str, Any]:
        if grace_seconds < 0 or grace_seconds > MAX_GRACE_SECONDS:
            raise InvalidField(f"Query 'gracePeriodSeconds' must be between 0 and {MAX_GRACE_SECONDS}")
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
            session.add(_key_row(stored, stamp, publication_id=pub.id))
        self._changed()
        grace = {"gracePeriodSeconds": grace_seconds}
        self.audit.record(
            actor, "publish.rotateKey", SUCCESS, target=model.name, tenant=model.namespace, details=grace
        )
        self.events.publish(ev.PUBLICATION_KEY_ROTATED, model.namespace, model.name, grace)
        return {"message": "API key rotated successfully", "newApiKey": key, "updatedAt": iso(stamp)}


def _key_row(stored: apikeys.StoredKey, stamp: datetime, publication_id: int | None = None) -> ApiKey:
    return ApiKey(
        publication_id=publication_id,
        lookup_id=stored.lookup_id,
        salt=stored.salt,
        key_hash=stored.key_hash,
        masked=stored.masked,
        created_at=stamp,
    )
