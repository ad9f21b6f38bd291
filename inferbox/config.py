"""Settings from the environment: the spec's names first (PORT, JWT_SECRET, …), then inferbox's own.

A bad value stops start-up with one clear line (`ConfigError`), never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
RUNTIMES = ("local", "kubernetes")


class ConfigError(Exception):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    port: int = 8085
    host: str = "0.0.0.0"
    jwt_secret: str | None = None
    rate_limit_requests: int = 100
    rate_limit_burst: int = 10
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    log_json: bool = False
    kubeconfig: str | None = None
    data_dir: Path = Path(".inferbox")
    database_url: str | None = None
    redis_url: str | None = None
    # Prefix of every Redis key, so that several deployments (or test runs) can share one Redis.
    redis_prefix: str = "inferbox"
    admin_username: str = "admin"
    admin_password: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    runtime: str = "local"
    gateway_port: int = 8080
    gateway_url: str | None = None
    token_ttl_seconds: int = 3600
    scale_to_zero_seconds: float = 60.0
    scale_down_delay_seconds: float = 30.0
    # The most replicas one model may ask for: one tenant must not be able to fork the machine away.
    max_replicas: int = 16
    # Where tenants' local storageUris must lie (None: the directory inferbox starts in).
    model_root: Path | None = None
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For is believed; none by default, so
    # that no caller can choose the address its audit entries and per-address limits see.
    forwarded_allow_ips: tuple[str, ...] = ()
    # The largest inference request body (API predict, gateway, replicas). Control routes take far less.
    max_body_bytes: int = 32 * 1024 * 1024
    # Extra knobs for tests and operators; not in the spec.
    extra: Mapping[str, str] = field(default_factory=dict)

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

    def server_options(self) -> dict[str, object]:
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

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be between {minimum}{upper}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(f"{name} must be a URL with scheme {' or '.join(schemes)}, got {raw!r}")
    return raw


def _log_level(raw: str) -> tuple[str, bool]:
    """`LOG_LEVEL` is a level (debug, info, warn, error), optionally with `json` for structured logs:
    `info,json`, `debug json` or just `json` (info level)."""
    words = [w for w in raw.replace(",", " ").replace("+", " ").lower().split() if w]
    level, as_json = "info", False
    for word in words:
        if word == "json":
            as_json = True
        elif word in LOG_LEVELS:
            level = "warning" if word == "warn" else word
        else:
            raise ConfigError(
                f"LOG_LEVEL must be one of debug, info, warn, error (optionally with ',json'), got {raw!r}"
            )
    return level, as_json


def _proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """FORWARDED_ALLOW_IPS: comma-separated addresses or networks of trusted proxies (`*` for any)."""
    entries = tuple(e.strip() for e in (env.get("FORWARDED_ALLOW_IPS") or "").split(",") if e.strip())
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"FORWARDED_ALLOW_IPS entries must be IP addresses or networks (or *), got {entry!r}"
            ) from None
    return entries


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (os.environ by default)."""
    env = os.environ if env is None else env
    level, as_json = _log_level(env.get("LOG_LEVEL", "info"))
    runtime = (env.get("INFERBOX_RUNTIME") or "local").strip().lower()
    if runtime not in RUNTIMES:
        raise ConfigError(f"INFERBOX_RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "kubernetes":
        raise ConfigError("INFERBOX_RUNTIME=kubernetes is not available in this version; use local")
    database_url = _url(env, "DATABASE_URL", ("sqlite", "postgresql", "postgresql+psycopg", "postgres"))
    if database_url and database_url.startswith(("postgres://", "postgresql://")):
        # psycopg 3 is the driver we ship; the bare scheme would ask SQLAlchemy for psycopg2.
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    origins = tuple(o.strip() for o in (env.get("CORS_ORIGINS") or "").split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not urlsplit(origin).scheme:
            raise ConfigError(
                f"CORS_ORIGINS entries must be origins like https://console.example.com, got {origin!r}"
            )
    secret = env.get("JWT_SECRET") or None
    if secret is not None and len(secret) < 16:
        raise ConfigError("JWT_SECRET must be at least 16 characters")
    admin_username = (env.get("ADMIN_USERNAME") or "admin").strip()
    if not admin_username:
        raise ConfigError("ADMIN_USERNAME must not be empty")
    return Settings(
        port=_int(env, "PORT", 8085, minimum=1, maximum=65535),
        host=(env.get("HOST") or "0.0.0.0").strip(),
        jwt_secret=secret,
        rate_limit_requests=_int(env, "RATE_LIMIT_REQUESTS", 100, minimum=1),
        rate_limit_burst=_int(env, "RATE_LIMIT_BURST", 10, minimum=1),
        cors_origins=origins,
        log_level=level,
        log_json=as_json,
        kubeconfig=env.get("KUBECONFIG") or None,
        data_dir=Path(env.get("INFERBOX_DATA_DIR") or ".inferbox"),
        database_url=database_url,
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
        redis_prefix=(env.get("INFERBOX_REDIS_PREFIX") or "inferbox").strip(),
        admin_username=admin_username,
        admin_password=env.get("ADMIN_PASSWORD") or None,
        jwt_jwks_url=_url(env, "JWT_JWKS_URL", ("http", "https")),
        jwt_issuer=env.get("JWT_ISSUER") or None,
        jwt_audience=env.get("JWT_AUDIENCE") or None,
        runtime=runtime,
        gateway_port=_int(env, "GATEWAY_PORT", 8080, minimum=1, maximum=65535),
        gateway_url=_url(env, "INFERBOX_GATEWAY_URL", ("http", "https")),
        token_ttl_seconds=_int(env, "INFERBOX_TOKEN_TTL_SECONDS", 3600, minimum=60),
        scale_to_zero_seconds=_float(env, "INFERBOX_SCALE_TO_ZERO_SECONDS", 60.0, minimum=1.0),
        scale_down_delay_seconds=_float(env, "INFERBOX_SCALE_DOWN_DELAY_SECONDS", 30.0, minimum=0.0),
        max_replicas=_int(env, "INFERBOX_MAX_REPLICAS", 16, minimum=1),
        model_root=Path(env["INFERBOX_MODEL_ROOT"]) if env.get("INFERBOX_MODEL_ROOT") else None,
        forwarded_allow_ips=_proxies(env),
        max_body_bytes=_int(
            env, "INFERBOX_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=64 * 1024, maximum=1024**3
        ),
    )


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
