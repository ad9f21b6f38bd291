"""Errors in the spec's one shape: `{"error": "...", "details": "..."}`, for every route and status.

Routes raise `ApiError` for what only HTTP knows (401, the API's own 403s); control/ and runtime/
raise their domain errors, which `from_domain` maps here, in one place. FastAPI's own 404/405/413/422
and a store that cannot be reached (503) are turned into the same shape by `install`. An unexpected
exception is answered by `unexpected_error_response` from the request middleware, which keeps the
connection usable. Bodies never carry a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.responses import JSONResponse

from inferbox.control.errors import (
    Conflict,
    ControlError,
    Forbidden,
    InvalidField,
    NotFound,
    OperationFailed,
    UpstreamFailed,
)
from inferbox.control.validation import describe_all
from inferbox.health import Dependency
from inferbox.runtime import RuntimeUnavailable, SpecRefused
from inferbox.runtime.client import REPLICA_ERRORS, failure
from inferbox.store import STORE_UNAVAILABLE

log = logging.getLogger("inferbox.errors")


class ApiError(Exception):
    """An error answer: HTTP status, a short `error` and a `details` sentence."""

    def __init__(
        self,
        status: int,
        error: str,
        details: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {details or ''}")
        self.status = status
        self.error = error
        self.details = details
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "details": self.details or self.error}
        body.update(self.extra)
        return body


def bad_request(details: str, error: str = "Invalid request format") -> ApiError:
    return ApiError(400, error, details)


def not_found(what: str, details: str | None = None) -> ApiError:
    return ApiError(404, f"{what} not found", details)


def conflict(error: str, details: str | None = None) -> ApiError:
    return ApiError(409, error, details)


def unauthorized(details: str = "A valid bearer token is required") -> ApiError:
    return ApiError(401, "Authentication required", details, headers={"WWW-Authenticate": "Bearer"})


def forbidden(error: str = "Admin access required", details: str | None = None) -> ApiError:
    return ApiError(403, error, details)


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


# How each domain refusal answers: control/ and runtime/ raise, this is the API's one map.
_STATUS = {InvalidField: 400, Forbidden: 403, NotFound: 404, Conflict: 409, OperationFailed: 500}


def from_domain(exc: Exception) -> ApiError:
    """The API's answer to a refusal from control/ or runtime/ (raise it only for those)."""
    if isinstance(exc, UpstreamFailed):
        return ApiError(504 if exc.timed_out else 502, exc.error, exc.details)
    if isinstance(exc, ControlError):
        status = next(code for kind, code in _STATUS.items() if isinstance(exc, kind))
        return ApiError(status, exc.error, exc.details)
    if isinstance(exc, SpecRefused):
        return ApiError(400, "Invalid request format", str(exc))
    if isinstance(exc, RuntimeUnavailable):
        return ApiError(
            503,
            "Service unavailable",
            f"The runtime is unavailable: {exc}; try again shortly",
            headers={"Retry-After": str(STORE_RETRY_AFTER)},
        )
    if isinstance(exc, REPLICA_ERRORS):
        f = failure(exc)
        return ApiError(f.status, f.error, f.details, headers=f.headers)
    raise TypeError(f"not a domain refusal: {exc!r}")


STORE_RETRY_AFTER = 5


def store_unavailable() -> ApiError:
    return ApiError(
        503,
        "Service unavailable",
        "The store is unreachable; try again shortly",
        headers={"Retry-After": str(STORE_RETRY_AFTER)},
    )


def unexpected_error_response(request_id: str | None) -> JSONResponse:
    details = f"Unexpected error; request id {request_id}" if request_id else "Unexpected error"
    return error_response(ApiError(500, "Internal server error", details))


def install(
    app: FastAPI,
    store_health: Dependency | None = None,
    allowed_methods: Callable[[str], list[str]] | None = None,
) -> None:
    """Register the handlers that give every error the spec's shape. `allowed_methods(path)` names
    what a 405's Allow header lists."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(ApiError(400, "Invalid request format", describe_all(list(exc.errors()))))

    async def _domain(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(from_domain(exc))

    for kind in (ControlError, SpecRefused, RuntimeUnavailable, *REPLICA_ERRORS):
        app.add_exception_handler(kind, _domain)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = ApiError(404, "Not found", f"No route for {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = ApiError(
                405, "Method not allowed", f"{request.method} is not allowed on {request.url.path}"
            )
            methods = allowed_methods(request.url.path) if allowed_methods else []
            if methods:
                err.headers["Allow"] = ", ".join(methods)
                exc = StarletteHTTPException(405)  # its Allow (one route's methods) is replaced
        elif exc.status_code == 413:
            limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
            err = ApiError(
                413,
                "Request body too large",
                f"At most {limit} bytes on this route" if limit else "The body is too large for this route",
            )
        else:
            err = ApiError(exc.status_code, str(exc.detail), str(exc.detail))
        err.headers.update(exc.headers or {})
        return error_response(err)

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def _store(request: Request, exc: sa_exc.SQLAlchemyError) -> JSONResponse:
        if not isinstance(exc, STORE_UNAVAILABLE) and not getattr(exc, "connection_invalidated", False):
            raise exc  # a bug, not an outage: the request middleware answers 500 and logs it once
        if store_health is not None:
            store_health.failed(exc)
        return error_response(store_unavailable())
