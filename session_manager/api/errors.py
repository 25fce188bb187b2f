"""The one exception handler: every error leaves the manager as the error JSON.

``KatoError`` keeps its own status, code and headers; Litestar's ``HTTPException`` family
becomes the code the processor gives the same failure (``docs/errors.md``): malformed JSON
``422 INVALID_JSON``, wrong fields ``422 VALIDATION_ERROR``, unknown route, wrong method, body
too large; anything else is a logged ``500 INTERNAL_ERROR`` that shows no internals.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from session_manager.errors import (
    ErrorResponse,
    InvalidJson,
    KatoError,
    ValidationFailed,
    error_body,
)
from session_manager.v3 import owns_path
from session_manager.v3.errors import v3_error_response

__all__ = ("EXCEPTION_HANDLERS", "documented", "error_response")

log = logging.getLogger(__name__)

_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
    503: "SERVICE_UNAVAILABLE",
}
_NOT_JSON = "Request body is not valid JSON: send one UTF-8 JSON object"
_NOT_SCHEMA = (
    "Request does not match the schema: details.errors names each field and what it must be"
    " (OpenAPI: /schema)"
)


def _is_malformed_json(exc: HTTPException) -> bool:
    """Litestar's ``ClientException`` for a body msgspec could not parse (not a wrong field)."""
    cause = exc.__cause__
    return (
        isinstance(exc, SerializationException)
        or isinstance(cause, SerializationException)
        or (
            isinstance(cause, msgspec.DecodeError)
            and not isinstance(cause, msgspec.ValidationError)
        )
    )


def _translated(exc: HTTPException) -> KatoError | None:
    """The manager's error for a framework input error, so both services answer it alike."""
    if _is_malformed_json(exc):
        return InvalidJson(_NOT_JSON, error=str(exc.detail))
    if isinstance(exc, ValidationException):
        return ValidationFailed(_NOT_SCHEMA, errors=exc.extra or [])
    return None


def _details(request: Request[Any, Any, Any], status: int) -> dict[str, Any]:
    """What a framework error's client needs to fix the request: a 413's limit, in bytes."""
    if status != 413:
        return {}
    resolve = getattr(request.scope.get("route_handler"), "resolve_request_max_body_size", None)
    limit = resolve() if resolve is not None else None
    return {"limit_bytes": limit} if isinstance(limit, int) else {}


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Map any exception to ``{"error": {"code", "message", "details"}, "status"}``.

    A path or method no route has, under the v3 API's prefix, gets v3's shape instead.
    """
    if (
        isinstance(exc, HTTPException)
        and exc.status_code in (404, 405)
        and owns_path(request.app.state.get("settings"), request.url.path)
    ):
        return v3_error_response(request, exc)
    if isinstance(exc, HTTPException):
        exc = _translated(exc) or exc
    if isinstance(exc, KatoError):
        body = error_body(exc.status, exc.code, exc.message, exc.details)
        return Response(body, status_code=exc.status, headers=exc.headers)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        code = _CODES.get(status, f"HTTP_{status}")
        body = error_body(status, code, str(exc.detail), _details(request, status))
        return Response(body, status_code=status, headers=exc.headers)
    log.exception("unhandled error", extra={"path": request.url.path})
    return Response(
        error_body(KatoError.status, KatoError.code, "An unexpected error occurred"),
        status_code=KatoError.status,
    )


def documented(*errors: type[KatoError]) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a route answers, by status, each with the error body."""
    codes: dict[int, list[str]] = {}
    for error in errors:
        codes.setdefault(error.status, []).append(error.code)
    return {
        status: ResponseSpec(
            data_container=ErrorResponse,
            description=" or ".join(dict.fromkeys(names)),
            generate_examples=False,
        )
        for status, names in codes.items()
    }


EXCEPTION_HANDLERS: ExceptionHandlersMap = {Exception: error_response}
"""Registered by ``create_app``: one handler for every exception type."""
