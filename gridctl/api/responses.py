"""The error answers every operation documents in the OpenAPI schema, in one place."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str


class FieldErrorOut(BaseModel):
    type: str
    loc: list[str | int] = Field(description="where: body, query or path, then the field's path")
    msg: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldErrorOut]
    message: str = Field(description="every problem on one line, each led by its field")


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 1}}}

_DESCRIPTIONS: dict[int, tuple[str, type[BaseModel], dict[str, Any] | None]] = {
    401: ("no token, or one unknown, expired or revoked", ErrorOut, None),
    403: ("the token's role may not use this operation", ErrorOut, None),
    404: ("not found, or outside the token's scope", ErrorOut, None),
    409: ("conflicts with what is stored", ErrorOut, None),
    422: ("a field is invalid: each problem names its field", ValidationErrorOut, None),
    429: ("too many requests: wait Retry-After seconds", ErrorOut, _RETRY_AFTER),
    503: ("the site is not running in this service, or the database is busy or unreachable (live values and "
          "alarms still answer): try again after Retry-After seconds", ErrorOut, _RETRY_AFTER),
}


def errors(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses; `descriptions` (`e409="..."`) replaces a default description."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, model, headers = _DESCRIPTIONS[code]
        entry: dict[str, Any] = {"model": model, "description": descriptions.get(f"e{code}", description)}
        if headers:
            entry["headers"] = headers
        out[code] = entry
    return out


def csv_or_json(description: str = "JSON, or CSV with `format=csv`") -> dict[int | str, dict[str, Any]]:
    """The 200 answer of an operation that also answers in CSV."""
    return {200: {"description": description,
                  "content": {"text/csv": {"schema": {"type": "string"}}}}}


# Every operation under /api/v1 may be rate limited, and may find the database unreachable.
COMMON = errors(429, 503)
# Operations that need a token.
AUTHENTICATED = errors(401, 403)


def with_validation_errors_as_answered(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents its own 422 body; gridctl answers `ValidationErrorOut` (the same items and a one-line
    `message`, see `gridctl.api.app`): document that one everywhere."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ValidationErrorOut" not in components:
        return schema
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("responses", {}).get("422", {}).get("content", {}).get("application/json")
            if content is not None:
                content["schema"] = {"$ref": "#/components/schemas/ValidationErrorOut"}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
