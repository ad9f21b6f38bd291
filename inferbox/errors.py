"""Errors in the spec's one shape: `{"error": "...", "details": "..."}`, for every route and status.

Handlers raise `ApiError` (or a subclass); FastAPI's own 404/405/422 and any unexpected exception are
turned into the same shape by `install`. Bodies never carry a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

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


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else "body"


def describe_validation_error(err: dict[str, Any]) -> str:
    """One sentence for one pydantic error, in the spec's words where it has some."""
    field = _field_path(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    if kind == "missing":
        return f"Field '{field}' is required"
    if kind in ("json_invalid", "json_type"):
        return "Request body must be valid JSON"
    if kind == "model_attributes_type" or (kind == "dict_type" and field == "body"):
        return "Request body must be a JSON object"
    if kind == "extra_forbidden":
        return f"Field '{field}' is not allowed"
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ")
    return f"Field '{field}': {msg}"


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the spec's shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        details = "; ".join(describe_validation_error(e) for e in errors[:5]) or "Invalid request"
        return error_response(ApiError(400, "Invalid request format", details))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = ApiError(404, "Not found", f"No route for {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = ApiError(
                405, "Method not allowed", f"{request.method} is not allowed on {request.url.path}"
            )
        else:
            err = ApiError(exc.status_code, str(exc.detail), str(exc.detail))
        err.headers.update(exc.headers or {})
        return error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        details = f"Unexpected error; request id {request_id}" if request_id else "Unexpected error"
        # This answer is sent outside the other middleware, so it carries the request id itself.
        headers = {"X-Request-ID": request_id} if request_id else None
        return error_response(ApiError(500, "Internal server error", details, headers=headers))
