"""OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, which its clients parse
(``openai.BadRequestError`` and friends). Every failure on the ``/openai/v1`` paths answers in it."""

from __future__ import annotations

from pydantic import ValidationError

from inferbox.server.protocol import dumps
from inferbox.server.rest.endpoints import JSON, Response


class OpenAIError(Exception):
    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, object]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 404:
            kind = "not_found_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return self.status, dumps(self.body()), JSON


def from_validation(exc: ValidationError) -> OpenAIError:
    """The first problem pydantic found, as a 400 naming the offending field."""
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    return OpenAIError(400, f"{param}: {message}" if param else message, param=param, code="invalid_value")
