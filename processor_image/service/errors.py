"""Every error the service answers, in one body: ``{"error": {code, message, details}, "status"}``.

Engine and storage errors, framework errors (validation, malformed JSON, oversized bodies,
unknown routes and methods) and bugs are mapped here and nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation, Reference
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE

from processor_image.engine import (
    EngineError,
    GeneNotFound,
    InvalidGeneValue,
    ObservationError,
    UnknownGene,
)
from processor_image.service.schemas import ErrorInfo, ErrorResponse
from processor_image.storage import StorageError

__all__ = (
    "EXCEPTION_HANDLERS",
    "ErrorShapedOperation",
    "PatternNotFound",
    "SequenceFailed",
    "documented",
    "error_body",
)

log = logging.getLogger(__name__)


class PatternNotFound(Exception):
    """``GET /pattern/{id}`` for an id nothing was learned under (spec §6: 404)."""

    def __init__(self, pattern_id: str) -> None:
        super().__init__(f"Pattern {pattern_id} not found")


class SequenceFailed(Exception):
    """An observation inside ``/observe-sequence`` failed; the ones before it stay applied."""

    def __init__(self, cause: EngineError, index: int, completed: list[Any]) -> None:
        super().__init__(cause.message)
        self.cause, self.index, self.completed = cause, index, completed


def error_body(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> ErrorResponse:
    """The one error shape (also each route's documented error schema)."""
    return ErrorResponse(
        error=ErrorInfo(code=code, message=message, details=details or {}), status=status
    )


def _reply(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        error_body(status, code, message, details),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


# Engine errors: status and code. The spec's own errors use ``HTTP_<status>`` (spec §7.1).
_ENGINE: dict[type[EngineError], tuple[int, str]] = {
    UnknownGene: (400, "HTTP_400"),
    GeneNotFound: (404, "HTTP_404"),
    InvalidGeneValue: (400, "INVALID_GENE_VALUE"),
    ObservationError: (422, "INVALID_OBSERVATION"),
}


def _engine_error(_: Request[Any, Any, Any], exc: EngineError) -> Response[Any]:
    status, code = _ENGINE.get(type(exc), (400, "ENGINE_ERROR"))
    return _reply(status, code, exc.message)


def _sequence_failed(_: Request[Any, Any, Any], exc: SequenceFailed) -> Response[Any]:
    status, code = _ENGINE.get(type(exc.cause), (400, "ENGINE_ERROR"))
    details = {"index": exc.index, "completed": exc.completed}
    return _reply(status, code, exc.cause.message, details)


def _pattern_not_found(_: Request[Any, Any, Any], exc: PatternNotFound) -> Response[Any]:
    return _reply(404, "HTTP_404", str(exc))


def _storage_error(_: Request[Any, Any, Any], exc: StorageError) -> Response[Any]:
    return _reply(503, "STORAGE_UNAVAILABLE", str(exc))


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, NotFoundException):
        return _reply(404, "NOT_FOUND", "Not Found")
    if isinstance(exc, MethodNotAllowedException):
        # RFC 9110: a 405 names the methods the resource has.
        return _reply(405, "METHOD_NOT_ALLOWED", "Method Not Allowed", headers=exc.headers)
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        return _reply(413, "BODY_TOO_LARGE", "Request body is too large")
    if (
        isinstance(exc, SerializationException)
        or isinstance(exc.__cause__, SerializationException)
        or (
            isinstance(exc.__cause__, msgspec.DecodeError)
            and not isinstance(exc.__cause__, msgspec.ValidationError)
        )
        or "malformed" in str(exc.detail).lower()
    ):
        details = {"error": str(exc.detail)} if exc.detail else None
        return _reply(422, "INVALID_JSON", "Request body is not valid JSON", details)
    if isinstance(exc, ValidationException):
        return _reply(
            422, "VALIDATION_ERROR", "Request body does not match the schema", {"errors": exc.extra}
        )
    return _reply(
        exc.status_code,
        f"HTTP_{exc.status_code}",
        str(exc.detail),
        exc.extra if isinstance(exc.extra, dict) else None,
    )


def _undecodable(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    return _reply(422, "INVALID_JSON", "Request body is not valid UTF-8 JSON", {"error": str(exc)})


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unexpected error", exc_info=exc)
    return _reply(500, "INTERNAL_ERROR", "An unexpected error occurred", {"error": str(exc)})


_MEANINGS = {
    400: "HTTP_400: unknown gene (the update stops there); INVALID_GENE_VALUE",
    404: "HTTP_404: no such gene or pattern",
    413: "BODY_TOO_LARGE: the body is over MAX_BODY_BYTES",
    422: "INVALID_JSON, VALIDATION_ERROR (wrong fields or types), INVALID_OBSERVATION",
    503: "STORAGE_UNAVAILABLE: the knowledge base (MongoDB) cannot be reached",
}

BODY = (413, 422)
"""What any route with a JSON body can answer."""


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route answers, each with the one error body."""
    return {
        status: ResponseSpec(
            data_container=ErrorResponse, description=_MEANINGS[status], generate_examples=False
        )
        for status in statuses
    }


@dataclass
class ErrorShapedOperation(Operation):
    """An OpenAPI operation without Litestar's stock 400 entry.

    Litestar documents a 400 with its own exception body for every route that has inputs; this
    service answers input errors as 422 in the error JSON (spec §7.1), so only the 400s that
    ``documented`` declared stay.
    """

    def __post_init__(self) -> None:
        stock = (self.responses or {}).get("400")
        content = getattr(stock, "content", None) or {}
        if stock is not None and not any(
            isinstance(media.schema, Reference) and media.schema.ref.endswith("ErrorResponse")
            for media in content.values()
        ):
            del self.responses["400"]  # type: ignore[union-attr]


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    EngineError: _engine_error,
    SequenceFailed: _sequence_failed,
    PatternNotFound: _pattern_not_found,
    StorageError: _storage_error,
    HTTPException: _http_error,
    UnicodeDecodeError: _undecodable,
    Exception: _unexpected,
}
