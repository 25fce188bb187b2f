"""The one exception handler: every error leaves the manager as the error JSON.

``KatoError`` keeps its own status, code and headers; Litestar's ``HTTPException`` family
(malformed JSON, wrong fields, unknown route, wrong method, body too large) gets a code from
its status; anything else is a logged ``500 INTERNAL`` that shows no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from session_manager.errors import ErrorResponse, KatoError, error_body

__all__ = ("EXCEPTION_HANDLERS", "documented", "error_response")

log = logging.getLogger(__name__)

_CODES = {
    400: "VALIDATION_FAILED",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
    503: "SERVICE_UNAVAILABLE",
}


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Map any exception to ``{"error": {"code", "message", "details"}, "status"}``."""
    if isinstance(exc, KatoError):
        body = error_body(exc.status, exc.code, exc.message, exc.details)
        return Response(body, status_code=exc.status, headers=exc.headers)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        details: dict[str, Any] = {}
        if isinstance(exc, ValidationException) and exc.extra:
            details["errors"] = exc.extra
        code = _CODES.get(status, f"HTTP_{status}")
        body = error_body(status, code, str(exc.detail), details)
        return Response(body, status_code=status, headers=exc.headers)
    log.exception("unhandled error", extra={"path": request.url.path})
    return Response(error_body(500, "INTERNAL", "internal error"), status_code=500)


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
