"""The OpenAPI document, honest about what the routes answer.

FastAPI documents a 422 for every operation with parameters, which inferbox never sends (validation
errors are 400 in the spec's shape), and knows nothing of the answers the API's middleware and
dependencies give. This module derives them from each route itself: its dependencies say whether it
needs a token (401) or the admin (403), its path whether it names a model (404), its method whether it
has a body (413), and every `/api` route may be rate limited (429) or find the store down (503).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from inferbox.api.deps import get_admin, get_namespace, get_principal

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "a short name of the error"},
        "details": {"type": "string", "description": "what was wrong, in a sentence"},
    },
}
_DESCRIPTIONS = {
    "400": "Bad input: the details name the field",
    "401": "No bearer token, or one that is not valid",
    "403": "The caller may not do this (not the admin, or another tenant)",
    "404": "No such object for this caller (another tenant's objects are not found either)",
    "409": "Conflicts with what exists",
    "413": "The body is larger than this route takes",
    "429": "A rate limit was reached; Retry-After says when to try again",
    "503": "The store is unreachable; Retry-After says when to try again",
}
_RATE_HEADERS = {
    name: {"schema": {"type": "string"}, "description": description}
    for name, description in (
        ("X-RateLimit-Limit", "requests per minute allowed"),
        ("X-RateLimit-Remaining", "requests left in this minute"),
        ("X-RateLimit-Reset", "seconds until the minute's window ends"),
    )
}
_CONFLICTS = {("POST", "/api/models"), ("POST", "/api/admin/tenants"), ("POST", "/api/models/{name}/publish")}
_CONFLICTS |= {("DELETE", "/api/admin/tenants/{name}")}


def _dependencies(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _dependencies(sub)
    return found


def _error(status: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in ("429", "503"):
        body["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return body


def document(app: FastAPI, routers: Sequence[APIRouter]) -> dict[str, Any]:
    """Build (once) the document served at /api/openapi.json; `routers` are the ones the app includes
    (their routes carry the dependencies this reads)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "an admin token from /api/admin/login, or a tenant's JWT",
        }
    }
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute):
            continue
        calls = _dependencies(route.dependant)
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            _describe(operation, route.path_format, method, calls)
    _hoist_definitions(doc, schemas)
    metrics = doc["paths"].get("/metrics", {}).get("get")
    if metrics is not None:
        metrics["responses"]["200"] = {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    app.openapi_schema = doc
    return doc


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself (to bound or thread its parsing)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def _hoist_definitions(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Move the `$defs` of bodies given by `json_body` into the document's components."""
    for operations in doc["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                schemas.update(media.get("schema", {}).pop("$defs", {}))


def _describe(operation: dict[str, Any], path: str, method: str, calls: set[Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    if not path.startswith("/api"):
        operation["security"] = []
        return
    authenticated = get_principal in calls
    operation["security"] = [{"bearer": []}] if authenticated else []
    statuses = ["400", "429", "503"]
    if authenticated:
        statuses.append("401")
    # 403: admin routes, a tenant naming another tenant (?namespace=, a body's namespace or tenantId),
    # predict's custom connection.
    if get_admin in calls or get_namespace in calls or "/predict" in path or "/publish" in path:
        statuses.append("403")
    if "{name}" in path:
        statuses.append("404")
    if (method, path) in _CONFLICTS:
        statuses.append("409")
    if method in ("POST", "PUT"):
        statuses.append("413")
    if path in ("/api/admin/login", "/api/validate-api-key"):
        statuses.append("401")
    for status in sorted(set(statuses)):
        responses.setdefault(status, _error(status))
    for status, answer in responses.items():
        if status.startswith("2"):
            answer.setdefault("headers", {}).update(_RATE_HEADERS)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods some operation of the document serves on `path`, for a 405's Allow header (the
    router's own names those of the first route that matched the path only)."""
    patterns: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allow_patterns", None)
    if patterns is None:
        patterns = []
        for template, operations in app.openapi()["paths"].items():
            regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            patterns.append((re.compile(f"^{regex}$"), sorted(m.upper() for m in operations)))
        app.state.allow_patterns = patterns
    return sorted({m for pattern, methods in patterns if pattern.match(path) for m in methods})
