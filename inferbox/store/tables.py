"""The store's tables (SQLAlchemy 2). The schema itself changes only through migrations/."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are aware and in UTC on the way out, whatever the database keeps
    (SQLite keeps no zone at all)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="Active")
    created_at: Mapped[datetime]


class AdminCredential(Base):
    __tablename__ = "admin_credentials"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    # "scrypt$n$r$p$salt$hash"; never the password itself.
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_models_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.name", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    framework: Mapped[str] = mapped_column(String(32))
    storage_uri: Mapped[str] = mapped_column(Text)
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    scale_target: Mapped[int] = mapped_column(Integer)
    scale_metric: Mapped[str] = mapped_column(String(32))
    # `ModelArgs` (control/model_config.py) as JSON by its field names; NULL in rows made before 0006.
    args: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    publication: Mapped[Publication | None] = relationship(
        back_populates="model", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class Publication(Base):
    __tablename__ = "publications"
    __table_args__ = (UniqueConstraint("host_key", "external_path", name="uq_publications_route"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    model_type: Mapped[str] = mapped_column(String(32))
    external_path: Mapped[str] = mapped_column(String(255))
    public_hostname: Mapped[str | None] = mapped_column(String(253), nullable=True)
    # public_hostname or "" so that the route's uniqueness holds when no hostname is set.
    host_key: Mapped[str] = mapped_column(String(253), default="")
    # `RateLimiting` and `Authentication` (control/publish_config.py), as JSON by their field names.
    rate_limiting: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=True)
    authentication: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), default="active")
    # A request body that fits the model (its input width read from the model), for the documentation.
    example_input: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    model: Mapped[Model] = relationship(back_populates="publication")
    keys: Mapped[list[ApiKey]] = relationship(
        back_populates="publication", cascade="all, delete-orphan", passive_deletes=True
    )
    usage: Mapped[Usage | None] = relationship(
        back_populates="publication", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id", ondelete="CASCADE"))
    # The first characters of the key's random part: an O(1) lookup index, not enough to call with.
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(128))
    masked: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    # Set when rotated out: the key keeps working until then (a grace period), never after.
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)

    publication: Mapped[Publication] = relationship(back_populates="keys")


class Usage(Base):
    __tablename__ = "usage"

    publication_id: Mapped[int] = mapped_column(
        ForeignKey("publications.id", ondelete="CASCADE"), primary_key=True
    )
    total_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    requests_today: Mapped[int] = mapped_column(BigInteger, default=0)
    day: Mapped[date | None] = mapped_column(Date, nullable=True)
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
    last_access_time: Mapped[datetime | None] = mapped_column(nullable=True)

    publication: Mapped[Publication] = relationship(back_populates="usage")


class RuntimeLease(Base):
    """Which control plane owns a runtime's processes (the local runtime has exactly one owner): a
    lease its owner renews, so that a crashed owner's successor can take over once it went stale."""

    __tablename__ = "runtime_leases"

    runtime: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]


class AuditEntry(Base):
    """Append-only: rows are inserted, never updated or deleted by the application."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UsageBucket(Base):
    """A publication's calls in one minute, as the gateways counted them: admitted requests, tokens,
    and refusals apart (a refused credential, a refused quota). Kept for `BUCKET_RETENTION` (see
    gateway/usage.py); no foreign key, so that a gateway flushing a minute of a publication just
    removed does not fail its whole batch (readers only look at buckets since the publication's
    creation, and pruning drops those of removed publications)."""

    __tablename__ = "usage_buckets"

    publication_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[datetime] = mapped_column(primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    unauthorized: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_limited: Mapped[int] = mapped_column(BigInteger, default=0)
