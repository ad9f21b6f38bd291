"""Validation with pydantic, worded as the spec words it: `Field 'config.rateLimiting.burstLimit' must
be a positive integer`. One sentence per problem, built here from pydantic's error, for request bodies
parsed by the API and for the control plane's own checks alike."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from inferbox.control.errors import InvalidField

M = TypeVar("M", bound=BaseModel)

# A custom error whose message completes "Field 'x' ..." (`must be one of ...`, `is not a tenant name`).
FIELD_ERROR = "inferbox_field"


def field_error(message: str) -> PydanticCustomError:
    """Raise this from a validator: the message completes "Field '<its path>' ..." (a predicate such
    as "must be one of ...", or ": " and a sentence of its own)."""
    return PydanticCustomError(FIELD_ERROR, message)


def field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else "body"


_PREDICATES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "extra_forbidden": "is not allowed",
    "missing": "is required",
}


def describe(err: dict[str, Any]) -> str:
    """One sentence for one pydantic error."""
    field = field_path(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind in ("json_invalid", "json_type"):
        return "Request body must be valid JSON"
    if field == "body" and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "Request body must be a JSON object"
    if kind == FIELD_ERROR:
        message = str(err["msg"])
        return f"Field '{field}'{message}" if message.startswith(":") else f"Field '{field}' {message}"
    if kind.endswith("_type") and err.get("input", ...) is None:
        return f"Field '{field}' is required"  # JSON null: the field was not given a value
    if kind in _PREDICATES:
        return f"Field '{field}' {_PREDICATES[kind]}"
    if kind == "greater_than":
        return f"Field '{field}' must be greater than {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"Field '{field}' must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"Field '{field}' must be at most {ctx.get('le')}"
    if kind == "less_than":
        return f"Field '{field}' must be less than {ctx.get('lt')}"
    if kind == "string_too_long":
        return f"Field '{field}' must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return (
            f"Field '{field}' must not be empty"
            if ctx.get("min_length") == 1
            else (f"Field '{field}' must be at least {ctx.get('min_length')} characters")
        )
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"Field '{field}' must be one of {expected}"
    message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"Field '{field}': {message}"


def describe_all(errors: list[Any], limit: int = 5) -> str:
    return "; ".join(describe(e) for e in errors[:limit]) or "Invalid request"


def validated(model: type[M], data: Any, *, prefix: tuple[str, ...] = ()) -> M:
    """`model` validated from `data`, or InvalidField naming the first problems (paths under `prefix`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors()]
        raise InvalidField(describe_all(errors)) from None
