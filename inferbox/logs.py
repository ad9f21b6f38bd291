"""Logging for the service: one setup, secrets scrubbed from every line, recent lines kept for admins.

Scrubbing happens in a filter on the handlers, so that a token or API key that reaches any logger (ours,
uvicorn's, a library's) is masked before it is written anywhere.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from inferbox.timefmt import iso

# The most lines any log route answers (the service's own, a model's replicas', kubectl logs).
MAX_LOG_LINES = 1000

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SECRET_PATTERNS = (
    # API keys.
    (re.compile(r"pk_(live|test)_[A-Za-z0-9_\-]+"), r"pk_\1_***"),
    # JWTs: three base64url parts, the first two JSON objects ("eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "<jwt>"),
    # Bearer credentials of any other kind.
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1***"),
    # "password": "...", password=..., token=...
    (
        re.compile(r"(?i)([\"']?(?:password|secret|token|api_?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
        r"\1***",
    ),
)


def scrub(text: str) -> str:
    """Mask API keys, JWTs, bearer credentials and password/secret/token values in a string."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _secret_key(key: str) -> bool:
    """Keys whose values are credentials: an API key in any spelling, a secret, a password, a token.
    `tokensPerHour` and the like are limits, not credentials, and stay."""
    k = key.lower().replace("_", "").replace("-", "")
    return (
        k.endswith("apikey")
        or k.endswith("secret")
        or k.endswith("password")
        or k in ("key", "token", "accesstoken", "refreshtoken", "authorization", "bearer")
    )


def scrub_data(value: Any) -> Any:
    """A defensive copy of event data without key material: credential-named fields are dropped and
    strings are masked like log lines (API keys, JWTs). Publishers never put keys in events; this makes
    sure a mistake there cannot reach a socket."""
    if isinstance(value, dict):
        return {k: scrub_data(v) for k, v in value.items() if not (isinstance(k, str) and _secret_key(k))}
    if isinstance(value, list | tuple):
        return [scrub_data(v) for v in value]
    if isinstance(value, str):
        return scrub(value)
    return value


class ScrubFilter(logging.Filter):
    """Renders the message once, scrubbed, so that arguments cannot smuggle a secret past it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso(datetime.fromtimestamp(record.created, UTC), millis=True),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["requestId"] = request_id
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return scrub(line) if record.exc_info else line


class RecentLines(logging.Handler):
    """A bounded buffer of recent records, for `GET /api/admin/logs`."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__()
        self._lines: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        entry = {
            "timestamp": iso(datetime.fromtimestamp(record.created, UTC), millis=True),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        with self._lock_:
            self._lines.append(entry)

    def tail(self, lines: int, level: str | None = None) -> list[dict[str, Any]]:
        floor = logging.getLevelName(level.upper()) if level else logging.NOTSET
        if not isinstance(floor, int):
            floor = logging.NOTSET
        with self._lock_:
            entries = list(self._lines)
        if floor:
            entries = [e for e in entries if logging.getLevelName(e["level"].upper()) >= floor]
        return entries[-lines:] if lines > 0 else []


def setup(level: str = "info", as_json: bool = False, recent: RecentLines | None = None) -> RecentLines:
    """Configure the root logger once for the process; returns the recent-lines buffer."""
    recent = recent or RecentLines()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_inferbox", False):
            root.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handlers: tuple[logging.Handler, ...] = (stream, recent)
    for handler in handlers:
        handler.addFilter(ScrubFilter())
        setattr(handler, "_inferbox", True)  # noqa: B010 (marks the handlers a second setup replaces)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own handlers would bypass the filter; send its records through the root instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # our middleware logs requests
    # httpx logs every request at info: the runtime polls replicas every half second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return recent
