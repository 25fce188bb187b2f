"""One exception per error code of the service, so callers branch on types, not on strings.

Every error the service answers has the body ``{"error": {"code", "message", "details"},
"status"}``; ``error_for`` turns it into the class registered for its code (``KatoError``
itself for a code this client does not know), carrying ``status``, ``code``, ``message``,
``details`` and ``retry_after`` (seconds, from ``Retry-After``). A refused WebSocket
(closed with ``4000 + status``, the code as reason) becomes the same exception.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

__all__ = (
    "BackendUnavailable",
    "BodyTooLarge",
    "CapacityExceeded",
    "ConnectionFailed",
    "Forbidden",
    "IdempotencyKeyReused",
    "InternalError",
    "InvalidGene",
    "InvalidJson",
    "InvalidObservation",
    "KatoError",
    "MethodNotAllowed",
    "NotFound",
    "ProcessorOutOfMemory",
    "ProcessorTimeout",
    "ProcessorUnavailable",
    "RequestTimeout",
    "SessionConflict",
    "SessionExpired",
    "SessionNotFound",
    "SessionNotReady",
    "SocketClosed",
    "StartFailed",
    "StartsBusy",
    "StorageUnavailable",
    "StoreUnavailable",
    "Unauthorized",
    "UnknownGene",
    "UnsupportedEncoding",
    "ValidationError",
    "WebSocketMessageError",
    "error_for",
    "error_for_close",
)


class KatoError(Exception):
    """An error answer of the service; ``code`` is stable (docs/errors.md), branch on it."""

    codes: ClassVar[tuple[str, ...]] = ()
    """The error codes answered with this class (``error_for``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after


class ConnectionFailed(KatoError):
    """The manager could not be reached at all (no answer: refused, reset, timed out)."""

    codes = ("CONNECTION_FAILED",)


class Unauthorized(KatoError):
    """Missing or wrong session token, API key or admin token."""

    codes = ("UNAUTHORIZED",)


class Forbidden(KatoError):
    """A valid credential that may not do this (scope, another tenant's knowledge base)."""

    codes = ("FORBIDDEN",)


class SessionNotFound(KatoError):
    """No session has this id (or it belongs to another tenant)."""

    codes = ("SESSION_NOT_FOUND",)


class SessionConflict(KatoError):
    """The session's state forbids the request."""

    codes = ("SESSION_CONFLICT",)


class IdempotencyKeyReused(KatoError):
    """An ``Idempotency-Key`` already named a different create."""

    codes = ("IDEMPOTENCY_KEY_REUSED",)


class SessionExpired(KatoError):
    """The session ended; ``details["reason"]`` says why."""

    codes = ("SESSION_EXPIRED",)


class CapacityExceeded(KatoError):
    """A limit is reached (``details["limit"]`` names it); retried while ``Retry-After`` allows."""

    codes = ("CAPACITY_EXCEEDED",)


class SessionNotReady(KatoError):
    """The session was still starting, recovering or hibernating when the server's wait ran out."""

    codes = ("SESSION_NOT_READY",)


class StartsBusy(KatoError):
    """No start slot came free in time for a restore or recovery."""

    codes = ("STARTS_BUSY",)


class StoreUnavailable(KatoError):
    """The manager's Redis cannot be reached."""

    codes = ("STORE_UNAVAILABLE",)


class BackendUnavailable(KatoError):
    """The process table or Docker engine cannot be reached."""

    codes = ("BACKEND_UNAVAILABLE",)


class StartFailed(KatoError):
    """The processor did not become healthy; ``details["log_tail"]`` says why."""

    codes = ("START_FAILED",)


class ProcessorUnavailable(KatoError):
    """The processor could not be reached."""

    codes = ("PROCESSOR_UNAVAILABLE",)


class ProcessorTimeout(KatoError):
    """The processor did not answer in time (the request may have been applied)."""

    codes = ("PROCESSOR_TIMEOUT",)


class ProcessorOutOfMemory(KatoError):
    """The processor reached its memory limit; the request was not applied."""

    codes = ("PROCESSOR_OUT_OF_MEMORY",)


class RequestTimeout(KatoError):
    """The request body did not arrive in time."""

    codes = ("REQUEST_TIMEOUT",)


class BodyTooLarge(KatoError):
    """The body is over the server's limit."""

    codes = ("BODY_TOO_LARGE",)


class UnsupportedEncoding(KatoError):
    """A ``PUT /state`` body in a ``Content-Encoding`` other than ``zstd`` (or none)."""

    codes = ("UNSUPPORTED_ENCODING",)


class InvalidJson(KatoError):
    """The body is not JSON."""

    codes = ("INVALID_JSON",)


class ValidationError(KatoError):
    """JSON of the wrong shape or a bad query parameter; ``details["errors"]`` says where."""

    codes = ("VALIDATION_ERROR",)


class UnknownGene(KatoError):
    """An unknown gene name (the processor spec's ``HTTP_400``); nothing was applied."""

    codes = ("HTTP_400",)


class InvalidGene(KatoError):
    """A gene of the wrong type or out of range; nothing was applied."""

    codes = ("INVALID_GENE_VALUE",)


class InvalidObservation(KatoError):
    """An observation the engine cannot take (``details["index"]`` in a sequence)."""

    codes = ("INVALID_OBSERVATION",)


class NotFound(KatoError):
    """No such route, gene or pattern (``NOT_FOUND``, the processor's ``HTTP_404``)."""

    codes = ("NOT_FOUND", "HTTP_404")


class MethodNotAllowed(KatoError):
    """The route exists, the method does not."""

    codes = ("METHOD_NOT_ALLOWED",)


class StorageUnavailable(KatoError):
    """The processor's MongoDB cannot be reached."""

    codes = ("STORAGE_UNAVAILABLE",)


class InternalError(KatoError):
    """A bug on the server side (logged there)."""

    codes = ("INTERNAL_ERROR",)


class WebSocketMessageError(KatoError):
    """The processor answered a WebSocket message with ``{"type": "error"}``; the socket stays."""

    codes = ("WEBSOCKET_MESSAGE_ERROR",)


class SocketClosed(KatoError):
    """The WebSocket closed with a code that is no refusal (``details["close_code"]``)."""

    codes = ("WEBSOCKET_CLOSED",)


def _registry() -> dict[str, type[KatoError]]:
    found: dict[str, type[KatoError]] = {}
    pending: list[type[KatoError]] = [KatoError]
    while pending:
        cls = pending.pop()
        found.update(dict.fromkeys(cls.codes, cls))
        pending.extend(cls.__subclasses__())
    return found


_BY_CODE = _registry()


class _ErrorInfo(msgspec.Struct):
    code: str
    message: str = ""
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class _ErrorBody(msgspec.Struct):
    error: _ErrorInfo


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (an HTTP date is not sent by this service: ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_for(status: int, body: bytes, retry_after: str | None = None) -> KatoError:
    """The exception for an error answer; a body not in the service's shape keeps its text."""
    wait = _retry_after(retry_after)
    try:
        info = msgspec.json.decode(body, type=_ErrorBody).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body.decode("utf-8", "replace").strip()[:500]
        return KatoError(status, f"HTTP_{status}", text or f"HTTP {status}", retry_after=wait)
    cls = _BY_CODE.get(info.code, KatoError)
    return cls(status, info.code, info.message, info.details, retry_after=wait)


def error_for_close(close_code: int, reason: str) -> KatoError:
    """The exception for a WebSocket close: ``4000 + status`` with the code as reason, or other."""
    if 4000 <= close_code < 5000 and reason:
        cls = _BY_CODE.get(reason, KatoError)
        message = f"WebSocket refused: {close_code} {reason}"
        return cls(close_code - 4000, reason, message, {"close_code": close_code})
    details = {"close_code": close_code, "reason": reason}
    return SocketClosed(0, "WEBSOCKET_CLOSED", f"WebSocket closed: {close_code} {reason}", details)
