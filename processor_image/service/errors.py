"""Every error the service answers, in one body: ``{"error": {code, message, details}, "status"}``.

The package's own errors (``processor_image.errors.ProcessorError``, which carry their status
and code), framework errors (validation, malformed JSON, oversized bodies, unknown routes and
methods) and bugs are mapped here and nowhere else. The codes: ``docs/errors.md``.
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

from processor_image.engine import EngineError
from processor_image.errors import ProcessorError
from processor_image.service.memory import exit_out_of_memory
from processor_image.service.schemas import ErrorInfo, ErrorResponse

__all__ = (
    "BODY",
    "EXCEPTION_HANDLERS",
    "ErrorShapedOperation",
    "FailedButApplied",
    "PatternNotFound",
    "ProcessorFenced",
    "SequenceFailed",
    "StateNotReadable",
    "StateTooLarge",
    "UnsupportedEncoding",
    "documented",
    "error_body",
)

log = logging.getLogger(__name__)


class PatternNotFound(ProcessorError):
    """``GET /pattern/{id}`` for an id nothing was learned under (spec §6: 404)."""

    status, code = 404, "HTTP_404"

    def __init__(self, pattern_id: str) -> None:
        super().__init__(f"Pattern {pattern_id} not found")


class ProcessorFenced(ProcessorError):
    """The session is moving (hibernation fenced this processor): the manager retries elsewhere.

    A client never sees it: the manager waits for the restored processor and resends.
    """

    status, code = 503, "PROCESSOR_FENCED"

    def __init__(self) -> None:
        super().__init__(
            "The session is moving to another processor (hibernation): the session manager"
            " retries the request on the restored processor"
        )


class SequenceFailed(ProcessorError):
    """An observation inside ``/observe-sequence`` that would fail: the whole sequence is refused.

    Checked before anything is applied, so a refused sequence changes nothing (as a v3 session's
    failing ``observe-sequence`` leaves the session unchanged). Answered with its cause's
    status, code and message, plus ``details.index``: the observation refused.
    """

    def __init__(self, cause: EngineError, index: int) -> None:
        super().__init__(cause.message, index=index)
        self.status, self.code = cause.status, cause.code


class FailedButApplied(ProcessorError):
    """A request that failed after changing state: answered as its cause, but numbered.

    Spec §2.2: an observation that fails still counts ``time`` (and sets the percept data).
    The reply carries the sequence number it got in ``headers`` (``X-Kato-Seq``), so the
    manager journals it like any applied request and a replay repeats the same failure.
    """

    def __init__(self, cause: ProcessorError, headers: dict[str, str]) -> None:
        super().__init__(cause.message, **cause.details)
        self.status, self.code = cause.status, cause.code
        self.headers = headers


class StateTooLarge(ProcessorError):
    """A ``PUT /state`` body over ``MAX_STATE_BYTES``, as sent or once decompressed."""

    status, code = 413, "BODY_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"State body is over MAX_STATE_BYTES ({limit} bytes)", limit=limit)


class UnsupportedEncoding(ProcessorError):
    """A ``PUT /state`` body in a ``Content-Encoding`` other than ``zstd`` or none."""

    status, code = 415, "UNSUPPORTED_ENCODING"

    def __init__(self, coding: str) -> None:
        super().__init__(
            f"Content-Encoding {coding!r} is not accepted: send zstd or plain JSON",
            accepted=["zstd", "identity"],
        )


class StateNotReadable(ProcessorError):
    """A ``PUT /state`` body that is not a snapshot: ``INVALID_JSON`` or ``VALIDATION_ERROR``.

    The same codes a JSON body of any other route gets (the route reads its body itself, to
    decompress it and apply its own size limit).
    """

    status = 422

    def __init__(self, code: str, error: str) -> None:
        if code == "VALIDATION_ERROR":
            super().__init__(_NOT_SCHEMA, errors=[{"message": error, "source": "body"}])
        else:
            super().__init__(_NOT_JSON, error=error)
        self.code = code


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


def _processor_error(_: Request[Any, Any, Any], exc: ProcessorError) -> Response[Any]:
    """Every error of the package's one tree: its own status, code, message and details."""
    headers = exc.headers if isinstance(exc, FailedButApplied) else None
    return _reply(exc.status, exc.code, exc.message, exc.details, headers)


_NOT_JSON = "Request body is not valid JSON: send one UTF-8 JSON object"
_NOT_SCHEMA = (
    "Request does not match the schema: details.errors names each field and what it must be"
    " (OpenAPI: /schema)"
)


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
        return _reply(422, "INVALID_JSON", _NOT_JSON, details)
    if isinstance(exc, ValidationException):
        return _reply(422, "VALIDATION_ERROR", _NOT_SCHEMA, {"errors": exc.extra})
    return _reply(
        exc.status_code,
        f"HTTP_{exc.status_code}",
        str(exc.detail),
        exc.extra if isinstance(exc.extra, dict) else None,
    )


def _undecodable(_: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    return _reply(422, "INVALID_JSON", _NOT_JSON, {"error": str(exc)})


def _out_of_memory(_: Request[Any, Any, Any], exc: MemoryError) -> Response[Any]:
    """Over the memory limit: exit now, the manager recovers the session (``service.memory``)."""
    exit_out_of_memory()


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unexpected error", exc_info=exc)
    return _reply(500, "INTERNAL_ERROR", "An unexpected error occurred", {"error": str(exc)})


_MEANINGS = {
    400: "HTTP_400: unknown gene; INVALID_GENE_VALUE: wrong type or out of range (nothing applied)",
    404: "HTTP_404: no such gene or pattern",
    413: "BODY_TOO_LARGE: the body is over MAX_BODY_BYTES (PUT /state: MAX_STATE_BYTES)",
    415: "UNSUPPORTED_ENCODING: a Content-Encoding other than zstd or none",
    422: "INVALID_JSON, VALIDATION_ERROR (wrong fields or types), INVALID_OBSERVATION",
    500: "INTERNAL_ERROR: a bug; details.error has the exception text",
    503: (
        "STORAGE_UNAVAILABLE: the knowledge base (MongoDB) cannot be reached;"
        " PROCESSOR_FENCED: the session is hibernating (the manager retries)"
    ),
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
    ProcessorError: _processor_error,
    HTTPException: _http_error,
    UnicodeDecodeError: _undecodable,
    MemoryError: _out_of_memory,
    Exception: _unexpected,
}
