"""v3's error shapes, produced in one place: what a v3 client sees when something fails.

    V3Error (status, ``{"detail": …}``)
    ├── DetailNotFound (404, ``{"detail": "Session <id> not found or expired"}``)
    ├── GateNotFound (404, ``{"error": {"code": "SESSION_NOT_FOUND", …}}``: v3's session gate)
    └── BodyInvalid (422, ``{"detail": [{"type", "loc", "msg", "input"}, …]}``)

The manager's own errors raised under a v3 route (capacity, a processor that fails, Redis
down) keep their status and headers and get the body ``{"detail": <message>}``; Litestar's
404/405 become ``{"detail": "Not Found"}``/``{"detail": "Method Not Allowed"}``. Nothing leaves
as a bare 500: an unexpected error is ``{"detail": "Internal Server Error"}``, logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from session_manager.errors import KatoError

__all__ = (
    "BodyInvalid",
    "DetailNotFound",
    "GateNotFound",
    "V3Error",
    "decode_body",
    "v3_error_response",
)

log = logging.getLogger(__name__)


class V3Error(Exception):
    """An answer of a v3 route handler: ``{"detail": detail}`` with ``status``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def body(self) -> Any:
        """The JSON body v3 answers with."""
        return {"detail": self.detail}


class DetailNotFound(V3Error):
    """``GET /sessions/{id}`` (ungated in v3) for an unknown or expired session."""

    def __init__(self, session_id: str) -> None:
        super().__init__(404, f"Session {session_id} not found or expired")


class GateNotFound(V3Error):
    """v3's session gate: every gated session route for an unknown or expired session."""

    def __init__(self, session_id: str) -> None:
        super().__init__(404, f"Session {session_id} not found or expired")
        self.session_id = session_id

    def body(self) -> Any:
        """The gate's own body (§1.2), not ``detail``."""
        return {
            "error": {
                "code": "SESSION_NOT_FOUND",
                "message": self.detail,
                "session_id": self.session_id,
            }
        }


class BodyInvalid(V3Error):
    """A body, query or path value that fails the schema: v3's 422 list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, errors)


_PATH_PART = re.compile(r"\.([A-Za-z_][\w]*)|\[(\d+)\]|\[\"([^\"]*)\"\]")


def _location(path: str) -> list[str | int]:
    """Msgspec's ``$.a[0].b`` as v3's ``["body", "a", 0, "b"]``."""
    loc: list[str | int] = ["body"]
    for name, index, key in _PATH_PART.findall(path.removeprefix("$")):
        loc.append(int(index) if index else (name or key))
    return loc


def decode_body(raw: bytes, kind: type[Any]) -> Any:
    """``raw`` decoded as ``kind``; malformed JSON or a wrong field is v3's 422."""
    try:
        return msgspec.json.decode(raw or b"null", type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.partition(" - at `")
        loc = _location(where.rstrip("`"))
        missing = re.match(r"Object missing required field `([^`]+)`", message)
        if missing:
            loc.append(missing.group(1))
            error = {"type": "missing", "loc": loc, "msg": "Field required", "input": None}
        elif message.startswith("Expected `object`"):
            error = {"type": "model_attributes_type", "loc": loc, "msg": message, "input": None}
        else:
            error = {"type": "value_error", "loc": loc, "msg": message, "input": None}
        raise BodyInvalid([error]) from exc
    except msgspec.DecodeError as exc:
        raise BodyInvalid(
            [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}}]
        ) from exc


_FRAMEWORK = {404: "Not Found", 405: "Method Not Allowed"}


def v3_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every exception under a v3 route, in v3's shapes (the module docstring)."""
    if isinstance(exc, V3Error):
        return Response(exc.body(), status_code=exc.status)
    if isinstance(exc, KatoError):
        return Response({"detail": exc.message}, status_code=exc.status, headers=exc.headers)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        detail = _FRAMEWORK.get(status, str(exc.detail))
        if status == 400 or (status == 422 and exc.extra):  # framework validation
            loc = ["body"]
            error = {"type": "value_error", "loc": loc, "msg": str(exc.detail), "input": None}
            return Response({"detail": [error]}, status_code=422)
        return Response({"detail": detail}, status_code=status, headers=exc.headers)
    log.exception("unhandled error", extra={"path": request.url.path})
    return Response({"detail": "Internal Server Error"}, status_code=500)
