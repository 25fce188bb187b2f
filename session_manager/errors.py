"""The session manager's error tree; ``error_body`` is the one mapping to the error JSON.

    KatoError (500 INTERNAL_ERROR)
    ├── ValidationFailed (422 VALIDATION_ERROR)
    │   └── InvalidJson (422 INVALID_JSON)
    ├── InvalidGene (400 INVALID_GENE_VALUE)
    │   └── UnknownGeneName (400 HTTP_400)
    ├── Unauthorized (401 UNAUTHORIZED)
    ├── Forbidden (403 FORBIDDEN)
    ├── SessionNotFound (404 SESSION_NOT_FOUND)
    ├── ManagerOnlyRoute (404 NOT_FOUND, a processor route a client may not call)
    ├── SessionExpired (410 SESSION_EXPIRED)
    ├── SessionConflict (409 SESSION_CONFLICT)
    ├── PayloadTooLarge (413 BODY_TOO_LARGE)
    ├── CapacityExceeded (429 CAPACITY_EXCEEDED, Retry-After)
    ├── StartFailed (502 START_FAILED)
    ├── ProcessorUnavailable (502 PROCESSOR_UNAVAILABLE)
    ├── ProcessorTimeout (504 PROCESSOR_TIMEOUT)
    ├── ProcessorOutOfMemory (507 PROCESSOR_OUT_OF_MEMORY)
    ├── ProcessorUnhealthy (503 PROCESSOR_UNAVAILABLE, static processors)
    ├── StoreUnavailable (503 STORE_UNAVAILABLE, Retry-After)
    ├── StartsBusy (503 STARTS_BUSY, Retry-After)
    ├── SessionNotReady (503 SESSION_NOT_READY, Retry-After)
    │   └── RouteStale (the proxy resends it: a route older than the session's processor)
    └── BackendUnavailable (503 BACKEND_UNAVAILABLE)

Foreign errors (Redis, httpx, Docker) are translated where those libraries are called. A
failure both services can answer has the processor's code (``docs/errors.md``): malformed JSON,
a schema violation, an oversized body, a refused gene, a bug.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

__all__ = (
    "BackendUnavailable",
    "CapacityExceeded",
    "ErrorInfo",
    "ErrorResponse",
    "Forbidden",
    "IdempotencyKeyReused",
    "InvalidGene",
    "InvalidJson",
    "KatoError",
    "ManagerOnlyRoute",
    "PayloadTooLarge",
    "ProcessorOutOfMemory",
    "ProcessorTimeout",
    "ProcessorUnavailable",
    "ProcessorUnhealthy",
    "ProcessorUnreachable",
    "RouteStale",
    "SessionConflict",
    "SessionExpired",
    "SessionNotFound",
    "SessionNotReady",
    "StartFailed",
    "StartsBusy",
    "StoreUnavailable",
    "Unauthorized",
    "UnknownGeneName",
    "ValidationFailed",
    "error_body",
)


class KatoError(Exception):
    """Base of every error the manager raises on purpose; carries its HTTP status and code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` for capacity errors)."""
        return {}


class ValidationFailed(KatoError):
    """The request body or query does not match what the route takes."""

    status, code = 422, "VALIDATION_ERROR"


class InvalidJson(ValidationFailed):
    """The request body is not JSON at all."""

    code = "INVALID_JSON"


class InvalidGene(KatoError):
    """A gene at create of the wrong type or out of range (the processor's own rule)."""

    status, code = 400, "INVALID_GENE_VALUE"


class UnknownGeneName(InvalidGene):
    """A gene name the processor does not have (its ``Unknown gene: <name>``)."""

    code = "HTTP_400"


class Unauthorized(KatoError):
    """Missing or wrong session or admin token."""

    status, code = 401, "UNAUTHORIZED"


class Forbidden(KatoError):
    """A valid credential that may not do this: a missing scope, another tenant's knowledge base."""

    status, code = 403, "FORBIDDEN"


class SessionNotFound(KatoError):
    """No session has this id."""

    status, code = 404, "SESSION_NOT_FOUND"


class ManagerOnlyRoute(KatoError):
    """A proxied path naming a processor route only the manager calls (``/fence``, ``/claim`` …).

    Answered as the processor answers a route it does not have: a client has no such route.
    """

    status, code = 404, "NOT_FOUND"


class SessionConflict(KatoError):
    """The session is in a state that forbids this request."""

    status, code = 409, "SESSION_CONFLICT"


class IdempotencyKeyReused(KatoError):
    """An ``Idempotency-Key`` already made a session for a different create request."""

    status, code = 409, "IDEMPOTENCY_KEY_REUSED"


class SessionExpired(KatoError):
    """The session ended; ``details.reason`` says why."""

    status, code = 410, "SESSION_EXPIRED"


class PayloadTooLarge(KatoError):
    """A proxied request body is over ``MAX_PROXY_BODY_BYTES``."""

    status, code = 413, "BODY_TOO_LARGE"


class RequestTimeout(KatoError):
    """A proxied request's body did not arrive within ``BODY_READ_TIMEOUT_S``."""

    status, code = 408, "REQUEST_TIMEOUT"


class CapacityExceeded(KatoError):
    """A global, per-user or concurrent-start limit is reached."""

    status, code = 429, "CAPACITY_EXCEEDED"

    def __init__(self, message: str, *, retry_after_s: int = 5, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        """Tell the client when to try again."""
        return {"Retry-After": str(self.retry_after_s)}


class StartFailed(KatoError):
    """The processor did not become healthy; ``details.log_tail`` says why."""

    status, code = 502, "START_FAILED"


class ProcessorUnavailable(KatoError):
    """The processor could not be reached."""

    status, code = 502, "PROCESSOR_UNAVAILABLE"


class ProcessorUnreachable(ProcessorUnavailable):
    """No connection was made: the request was never sent, so sending it again is safe."""


class ProcessorTimeout(KatoError):
    """The processor did not answer in time."""

    status, code = 504, "PROCESSOR_TIMEOUT"


class ProcessorOutOfMemory(KatoError):
    """The processor reached its memory limit (``PROCESSOR_MEMORY_LIMIT``) and exited.

    The request in flight is not resent (it would likely do the same again); the session is
    recovered from its checkpoint and journal for the next one.
    """

    status, code = 507, "PROCESSOR_OUT_OF_MEMORY"


class StoreUnavailable(KatoError):
    """Redis cannot be reached."""

    status, code = 503, "STORE_UNAVAILABLE"

    @property
    def headers(self) -> dict[str, str]:
        """Outages are usually short: suggest a retry soon."""
        return {"Retry-After": "1"}


class StartsBusy(KatoError):
    """A restore or recovery waited the start timeout in line for a start slot and got none."""

    status, code = 503, "STARTS_BUSY"

    @property
    def headers(self) -> dict[str, str]:
        """Slots free up as starts finish: suggest a retry soon."""
        return {"Retry-After": "1"}


class SessionNotReady(KatoError):
    """The session is still starting, being recovered or moving after the bounded wait.

    Nothing is wrong with the request: the session will serve it once its processor is up,
    so the client is told to retry rather than given a gateway timeout.
    """

    status, code = 503, "SESSION_NOT_READY"

    @property
    def headers(self) -> dict[str, str]:
        """A recovery replays a journal: a few seconds is usually enough."""
        return {"Retry-After": str(SESSION_NOT_READY_RETRY_S)}


SESSION_NOT_READY_RETRY_S = 2
"""``Retry-After`` of ``SessionNotReady``."""


class RouteStale(SessionNotReady):
    """A write was answered through a route read before the session's processor was replaced.

    The journal refused it (the session's epoch moved on: ``store.journal.STALE``), so it is
    not acknowledged; the proxy resends it to the session's current processor. Should the
    resend run out of time the client gets ``SESSION_NOT_READY``: nothing was applied where
    the session now lives.
    """


class BackendUnavailable(KatoError):
    """The backend (process table, Docker engine) cannot be reached."""

    status, code = 503, "BACKEND_UNAVAILABLE"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What went wrong: a stable ``code`` to branch on, a message for people, context."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The one error JSON shape: ``{"error": {"code", "message", "details"}, "status"}``."""

    error: ErrorInfo
    status: int


def error_body(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> ErrorResponse:
    """The body of every 4xx/5xx answer (and its OpenAPI schema, per route)."""
    return ErrorResponse(
        error=ErrorInfo(code=code, message=message, details=details or {}), status=status
    )


class ProcessorUnhealthy(KatoError):
    """A static processor failed its health check; answered at once instead of waiting on it."""

    status, code = 503, "PROCESSOR_UNAVAILABLE"
