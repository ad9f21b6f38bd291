"""Settings from the environment: the spec's names first (PORT, JWT_SECRET, …), then inferbox's own.

Every knob is a field of `Settings`, typed, ranged and documented where it is declared, and read from
the environment variable its alias names (`from_env`). The class is plain pydantic rather than
pydantic-settings' `BaseSettings` on purpose: it never reads the environment by itself, so a test or an
embedding program builds exactly the settings it names. A bad value stops start-up with one clear line
(`ConfigError`) that names the variable, never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from inferbox.control.validation import describe

LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
MiB = 1024 * 1024


class ConfigError(Exception):
    """A setting that cannot be used; the message names the variable."""


def _url(schemes: tuple[str, ...]) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(f"must be a URL with scheme {' or '.join(schemes)}")
        return value

    return AfterValidator(check)


def _origins(values: tuple[str, ...]) -> tuple[str, ...]:
    for origin in values:
        if origin != "*" and not urlsplit(origin).scheme:
            raise ValueError(f"entries must be origins like https://console.example.com, got {origin!r}")
    return values


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    for entry in values:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"entries must be IP addresses or networks (or *), got {entry!r}") from None
    return values


Seconds = Annotated[float, Field(ge=0.0, le=86400.0)]


class Settings(BaseModel):
    """One control plane's (or gateway's) settings. Field names are Python's; aliases are the
    environment's. Build one with `from_env()` or by naming fields."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    # -- the spec's settings ---------------------------------------------------------------------
    port: int = Field(8085, ge=1, le=65535, alias="PORT", description="control plane port")
    jwt_secret: str | None = Field(
        None, min_length=16, alias="JWT_SECRET", description="HS256 secret (default: kept in the data dir)"
    )
    rate_limit_requests: int = Field(
        100, ge=1, le=10**9, alias="RATE_LIMIT_REQUESTS", description="API requests per minute per caller"
    )
    cors_origins: Annotated[tuple[str, ...], AfterValidator(_origins)] = Field(
        (), alias="CORS_ORIGINS", description="origins allowed to call the API from a browser"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", alias="LOG_LEVEL", description="debug, info, warn, error; `,json` for JSON lines"
    )
    kubeconfig: str | None = Field(
        None, alias="KUBECONFIG", description="kubeconfig of the Kubernetes runtime"
    )
    # -- inferbox's ------------------------------------------------------------------------------
    log_json: bool = Field(False, description="JSON log lines (LOG_LEVEL=info,json)")
    rate_limit_burst: int = Field(
        10, ge=1, le=10**9, alias="RATE_LIMIT_BURST", description="API requests per second per caller"
    )
    host: str = Field(
        "0.0.0.0", alias="HOST", description="address the control plane and the gateway listen on"
    )
    data_dir: Path = Field(
        Path(".inferbox"), alias="INFERBOX_DATA_DIR", description="the store, the secret, state"
    )
    database_url: Annotated[str | None, _url(("sqlite", "postgresql+psycopg"))] = Field(
        None, alias="DATABASE_URL", description="postgresql://user@host/db (default: SQLite in the data dir)"
    )
    redis_url: Annotated[str | None, _url(("redis", "rediss", "unix"))] = Field(
        None, alias="REDIS_URL", description="shared rate-limit state (redis://host:6379/0)"
    )
    redis_prefix: str = Field(
        "inferbox", min_length=1, alias="INFERBOX_REDIS_PREFIX", description="Redis key prefix"
    )
    admin_username: str = Field("admin", min_length=1, max_length=128, alias="ADMIN_USERNAME")
    admin_password: str | None = Field(
        None, alias="ADMIN_PASSWORD", description="default: generated, printed once"
    )
    jwt_jwks_url: Annotated[str | None, _url(("http", "https"))] = Field(
        None,
        alias="JWT_JWKS_URL",
        description="accept RS256/ES256 tenant tokens signed by keys from this JWKS",
    )
    jwt_issuer: str | None = Field(None, alias="JWT_ISSUER", description="tokens must carry this iss")
    jwt_audience: str | None = Field(None, alias="JWT_AUDIENCE", description="tokens must carry this aud")
    runtime: Literal["local", "kubernetes"] = Field("local", alias="INFERBOX_RUNTIME")
    # The Kubernetes runtime (docs/kubernetes.md): who serves published models, on which Gateway, and
    # the Services of inferbox's own gateway and control plane that routes and extAuth point at.
    k8s_dataplane: Literal["inferbox", "envoy"] = Field("inferbox", alias="INFERBOX_K8S_DATAPLANE")
    k8s_gateway: str = Field("inferbox/inferbox", alias="INFERBOX_K8S_GATEWAY")
    k8s_gateway_service: str = Field("inferbox/inferbox-gateway:8080", alias="INFERBOX_K8S_GATEWAY_SERVICE")
    k8s_control_service: str = Field("inferbox/inferbox:8085", alias="INFERBOX_K8S_CONTROL_SERVICE")
    gateway_port: int = Field(8080, ge=1, le=65535, alias="GATEWAY_PORT", description="the gateway's port")
    gateway_url: Annotated[str | None, _url(("http", "https"))] = Field(
        None, alias="INFERBOX_GATEWAY_URL", description="public base of published models' URLs"
    )
    token_ttl_seconds: int = Field(3600, ge=60, le=30 * 86400, alias="INFERBOX_TOKEN_TTL_SECONDS")
    scale_to_zero_seconds: float = Field(60.0, ge=1.0, le=86400.0, alias="INFERBOX_SCALE_TO_ZERO_SECONDS")
    scale_down_delay_seconds: Seconds = Field(30.0, alias="INFERBOX_SCALE_DOWN_DELAY_SECONDS")
    # The most replicas one model may ask for (the spec's examples ask for 20). The local runtime starts
    # no more than the machine's replica slots hold, over all models, and reports the rest as pending.
    max_replicas: int = Field(100, ge=1, le=1000, alias="INFERBOX_MAX_REPLICAS")
    replica_slots: int = Field(
        0,
        ge=0,
        le=100_000,
        alias="INFERBOX_REPLICA_SLOTS",
        description="replica processes the machine runs at once (0: its memory over 256 MiB)",
    )
    # Where tenants' local storageUris must lie (None: the directory inferbox starts in).
    model_root: Path | None = Field(None, alias="INFERBOX_MODEL_ROOT")
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For is believed; none by default, so
    # that no caller can choose the address its audit entries and per-address limits see.
    forwarded_allow_ips: Annotated[tuple[str, ...], AfterValidator(_networks)] = Field(
        (), alias="FORWARDED_ALLOW_IPS"
    )
    # The largest inference request body (API predict, gateway, replicas). Control routes take far less.
    max_body_bytes: int = Field(32 * MiB, ge=64 * 1024, le=1024 * MiB, alias="INFERBOX_MAX_BODY_BYTES")
    # The local runtime's supervision and the replicas' batching.
    poll_seconds: float = Field(0.5, ge=0.05, le=60.0, alias="INFERBOX_POLL_SECONDS")
    max_batch_size: int = Field(32, ge=1, le=4096, alias="INFERBOX_MAX_BATCH_SIZE")
    max_batch_wait_ms: float = Field(2.0, ge=0.0, le=1000.0, alias="INFERBOX_MAX_BATCH_WAIT_MS")
    drain_seconds: Seconds = Field(30.0, alias="INFERBOX_DRAIN_SECONDS")
    stop_grace_seconds: Seconds = Field(20.0, alias="INFERBOX_STOP_GRACE_SECONDS")
    # /ws: how long a socket may take to authenticate, how often it is pinged, how many events wait
    # for a slow client before it is dropped, and how long one send may block.
    ws_auth_timeout_seconds: float = Field(5.0, gt=0, le=300, alias="INFERBOX_WS_AUTH_TIMEOUT_SECONDS")
    ws_ping_seconds: float = Field(20.0, gt=0, le=3600, alias="INFERBOX_WS_PING_SECONDS")
    ws_queue_size: int = Field(256, ge=1, le=100_000, alias="INFERBOX_WS_QUEUE_SIZE")
    ws_send_timeout_seconds: float = Field(10.0, gt=0, le=3600, alias="INFERBOX_WS_SEND_TIMEOUT_SECONDS")

    @model_validator(mode="before")
    @classmethod
    def _log_level_words(cls, data: Any) -> Any:
        """`LOG_LEVEL` is a level, optionally with `json` for structured logs: `info,json`, `json`."""
        if isinstance(data, dict) and isinstance(data.get("LOG_LEVEL"), str):
            data = dict(data)
            raw = data.pop("LOG_LEVEL")
            words = [w for w in raw.replace(",", " ").replace("+", " ").lower().split() if w]
            level = "info"
            for word in words:
                if word == "json":
                    data["log_json"] = True
                elif word in LOG_LEVELS:
                    level = "warning" if word == "warn" else word
                else:
                    raise ValueError(
                        f"must be one of debug, info, warn, error (optionally with ',json'), got {raw!r}"
                    )
            data["LOG_LEVEL"] = level
        return data

    @field_validator("cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _psycopg(cls, value: Any) -> Any:
        # psycopg 3 is the driver we ship; the bare scheme would ask SQLAlchemy for psycopg2.
        if isinstance(value, str) and value.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("k8s_gateway")
    @classmethod
    def _namespaced_name(cls, value: str) -> str:
        ns, _, name = value.partition("/")
        if not (ns and name) or "/" in name:
            raise ValueError(f"must be namespace/name, got {value!r}")
        return value

    @field_validator("k8s_gateway_service", "k8s_control_service")
    @classmethod
    def _service_ref(cls, value: str) -> str:
        from inferbox.runtime.kubernetes.manifests import ServiceRef

        ServiceRef.parse(value)
        return value

    # -- derived ---------------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'inferbox.db').resolve()}"

    @property
    def token_issuer(self) -> str:
        """The `iss` of tokens inferbox signs itself (the spec's admin token says management-service)."""
        return self.jwt_issuer or "management-service"

    @property
    def public_gateway_url(self) -> str:
        return (self.gateway_url or f"http://localhost:{self.gateway_port}").rstrip("/")

    def server_options(self) -> dict[str, Any]:
        """The uvicorn options every HTTP server of inferbox shares (control plane and gateway)."""
        return {
            "proxy_headers": bool(self.forwarded_allow_ips),
            "forwarded_allow_ips": list(self.forwarded_allow_ips) or None,
            "server_header": False,
            "access_log": False,
            "log_config": None,
            # A WebSocket message is a token or a subscription: a few KiB at most.
            "ws_max_size": 64 * 1024,
        }

    def with_(self, **changes: Any) -> Settings:
        """These settings with some fields changed (validated again)."""
        return Settings.model_validate({**self.model_dump(), **changes})


def environment_names() -> dict[str, str]:
    """Each setting's environment variable, by field name."""
    return {name: f.alias for name, f in Settings.model_fields.items() if f.alias}


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (os.environ by default); blank values mean the default."""
    env = os.environ if env is None else env
    given = {
        alias: env[alias].strip() for alias in environment_names().values() if (env.get(alias) or "").strip()
    }
    try:
        return Settings.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "LOG_LEVEL"
        sentence = describe({**err, "loc": ()}).removeprefix("Field 'body'").strip().lstrip(":").strip()
        # A secret's (or a URL's, which may hold a password) value is not repeated back.
        secret = any(word in name for word in ("SECRET", "PASSWORD", "_URL"))
        value = None if secret else given.get(name)
        raise ConfigError(
            f"{name} {sentence}" + (f", got {value!r}" if value and "got" not in sentence else "")
        ) from None


def ensure_data_dir(path: Path) -> None:
    """The data dir holds the store, the JWT secret and the runtime's state: only its owner may enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)


def ensure_jwt_secret(settings: Settings) -> Settings:
    """Without JWT_SECRET, make a random secret once and keep it (mode 0600) in the data dir."""
    ensure_data_dir(settings.data_dir)
    if settings.jwt_secret:
        return settings
    path = settings.data_dir / "jwt_secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
    else:
        secret = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
    if len(secret) < 16:
        raise ConfigError(f"{path} holds no usable JWT secret; remove it or set JWT_SECRET")
    return settings.with_(jwt_secret=secret)
