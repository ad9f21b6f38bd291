"""A publication's configuration: its one definition.

The spec's names are the field names (`rateLimiting.burstLimit`, `authentication.allowedTenants`), the
request body, the stored row (the two nested objects are JSON columns), the API's view and the
gateway's route are all made from these classes. A limit on requests carries its window with it, so
adding one means adding a field to `RateLimiting`; the gateway's quotas follow.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    WithJsonSchema,
    model_validator,
)

from inferbox.control.tenants import label_problem
from inferbox.control.validation import field_error
from inferbox.ratelimit import Quota

MODEL_TYPES = ("traditional", "openai")
RESERVED_PREFIXES = ("/api", "/health", "/metrics", "/ws")
# The gateway serves KServe V1 and V2 under every published path (`{path}/v2/...`): a path with one of
# these segments would take another route's protocol paths (`/models/x/v2` serving `/models/x`'s V2).
PROTOCOL_SEGMENTS = ("v1", "v2")
ACTION_SUFFIXES = ("/predict", "/infer", "/chat/completions", "/completions", "/embeddings", "/models")
# Every limit is a whole number from 1 to a billion.
MAX_LIMIT = 1_000_000_000
MAX_METADATA_BYTES = 16 * 1024
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._~\-/]+$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Window:
    """The window, in seconds, of a limit on requests (as field metadata)."""

    seconds: int


def _limit(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)  # a web form's number field sends its digits as a string
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise field_error("must be a positive integer")
    if value > MAX_LIMIT:
        raise field_error(f"must be at most {MAX_LIMIT:,}")
    return value


Limit = Annotated[
    int,
    PlainValidator(_limit),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
]


def _blanks_unset(data: Any, names: tuple[str, ...] | None = None) -> Any:
    """A web form's empty field ("") means "not set": drop it, so the default (or what is kept) applies."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not (v == "" and (names is None or k in names))}
    return data


class RateLimiting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, data: Any) -> Any:
        return _blanks_unset(data)

    requestsPerMinute: Annotated[Limit, Window(60)] = 100
    requestsPerHour: Annotated[Limit, Window(3600)] = 5000
    tokensPerHour: Limit = Field(100_000, description="for openai publications: total_tokens per hour")
    burstLimit: Annotated[Limit, Window(1), Field(description="requests per second")] = 10

    @model_validator(mode="after")
    def _minute_within_hour(self) -> RateLimiting:
        if self.requestsPerMinute > self.requestsPerHour:
            raise field_error(": requestsPerMinute must not exceed requestsPerHour")
        return self

    def request_quotas(self) -> tuple[Quota, ...]:
        """One quota per limit on requests, the shortest window first (a burst refuses first)."""
        quotas = [
            Quota(name, getattr(self, name), meta.seconds)
            for name, field in RateLimiting.model_fields.items()
            for meta in field.metadata
            if isinstance(meta, Window)
        ]
        return tuple(sorted(quotas, key=lambda q: q.seconds))

    def token_quota(self) -> Quota:
        return Quota("tokensPerHour", self.tokensPerHour, 3600)


def _tenant_names(names: list[str]) -> list[str]:
    # Names are not checked against the tenants (that would tell a tenant which others exist): the
    # gateway admits a caller only when its tenant exists and is listed.
    for name in names:
        if label_problem(name):
            raise field_error(f": '{name}' is not a tenant name")
    return list(dict.fromkeys(names))


class Authentication(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    requireApiKey: StrictBool = True
    allowedTenants: Annotated[
        list[Annotated[str, Field(max_length=63)]],
        Field(max_length=100, description="tenants whose users' JWTs are accepted instead of the key"),
        AfterValidator(_tenant_names),
    ] = []


def check_external_path(path: str) -> str:
    if not path:
        raise field_error("must be a non-empty string")
    if not path.startswith("/"):
        raise field_error("must start with '/'")
    if ".." in path.split("/"):
        raise field_error("must not contain '..'")
    if "//" in path:
        raise field_error("must not contain '//'")
    if len(path) > 200 or not _PATH_CHARS.match(path):
        raise field_error("may hold only letters, digits and . _ ~ - / (200 at most)")
    path = path.rstrip("/") or "/"
    if path == "/":
        raise field_error("must not be the root path")
    for prefix in RESERVED_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            raise field_error(f"must not use the reserved prefix {prefix}")
    # A path ending in an action would shadow another route's action (`/models/x/predict`).
    for suffix in ACTION_SUFFIXES:
        if path.endswith(suffix):
            raise field_error(f"must not end with {suffix}: the gateway adds it")
    for segment in PROTOCOL_SEGMENTS:
        if segment in path.split("/"):
            raise field_error(f"must not hold a /{segment} segment: the gateway serves the protocol there")
    return path


def check_hostname(host: str) -> str:
    if "://" in host or "/" in host or ":" in host or "@" in host:
        raise field_error("must be a DNS name: no scheme, port or path")
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels):
        raise field_error("must be a DNS name like api.example.com")
    if labels[-1].isdigit():  # 127.0.0.1 and friends: an address, not a name (no TLD is all digits)
        raise field_error("must be a DNS name, not an IP address")
    return name


def _metadata_size(metadata: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise field_error(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return metadata


class PublishConfig(BaseModel):
    """A publication's settings. In a request every field may be left out: publish fills in the
    defaults (and the model's type and path), an update keeps what is set."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenantId: str | None = Field(
        None, max_length=253, description="the tenant (the admin names it; a tenant's is its own)"
    )
    modelType: Literal["traditional", "openai", ""] | None = Field(
        None,
        description=(
            'openai for language models (the default, or "", for huggingface text-generation '
            "and embedding models), else traditional"
        ),
    )
    externalPath: Annotated[str, AfterValidator(check_external_path)] | None = Field(
        None, max_length=200, description="the path on the gateway; default /models/{name}"
    )
    publicHostname: Annotated[str, AfterValidator(check_hostname)] | None = Field(
        None, max_length=253, description="route on this Host only (a DNS name)"
    )
    rateLimiting: RateLimiting = RateLimiting()
    authentication: Authentication = Authentication()
    metadata: Annotated[dict[str, Any], AfterValidator(_metadata_size)] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, data: Any) -> Any:
        # The original web UI sends "" for "auto-detect" (modelType) and "default" (externalPath).
        return _blanks_unset(data, ("tenantId", "modelType", "externalPath", "publicHostname"))

    def merged(self, patch: dict[str, Any]) -> dict[str, Any]:
        """This config with `patch` (a request's fields, by name) laid over it, nested objects field by
        field: the input for the config a publish or an update asks for. A null keeps what is there,
        except for publicHostname, where it removes the hostname."""
        base = self.model_dump()
        for name, value in patch.items():
            if value is None and name != "publicHostname":
                continue
            if name in ("rateLimiting", "authentication") and isinstance(value, dict):
                base[name] = {**base[name], **{k: v for k, v in value.items() if v is not None}}
            else:
                base[name] = value
        return base
