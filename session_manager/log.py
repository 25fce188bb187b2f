"""JSON-lines logging; ``request_id`` and ``session_id`` come from contextvars set per request.

Every line passes ``RedactSecrets`` first (uvicorn's lines too): credentials in query strings
(``?token=``, ``api_key=`` …) and ``Authorization``-style values never reach a log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from session_manager.ids import random_hex

__all__ = (
    "JsonFormatter",
    "RedactSecrets",
    "RequestContext",
    "configure_logging",
    "redact",
    "request_id",
    "request_id_from",
    "session_id",
)

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
"""A plain token: safe to log and to send on as a header value."""
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)

REDACTED = "[REDACTED]"
_SECRET_PATTERNS = (
    # name=value of a query string or form: token, access_token, api_key, x-api-key, secret ...
    re.compile(r"(?i)([\w.-]*(?:token|api[_-]?key|secret|password)=)[^&\s\"'#;,]+"),
    # a header written out as a pair or mapping: ('authorization', 'Bearer x'), authorization: x
    re.compile(
        r"(?i)((?:proxy-)?authorization|x-api-key|api-key|cookie)(['\"]?\s*[:=,]\s*(?:b?['\"])?)"
        r"(?:(?:bearer|basic|token)\s+)?[^'\"\s,)}&]+"
    ),
    # a credential scheme followed by its value, wherever it appears
    re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
)


def redact(text: str) -> str:
    """``text`` with every credential value replaced by ``[REDACTED]``."""
    text = _SECRET_PATTERNS[0].sub(rf"\1{REDACTED}", text)
    text = _SECRET_PATTERNS[1].sub(rf"\1\2{REDACTED}", text)
    return _SECRET_PATTERNS[2].sub(rf"\1\2{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, ``extra`` values and traceback without credentials.

    Installed on the handler, so it sees every record that is written, whichever logger
    (ours, uvicorn's, a library's) made it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: log it as written
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD or key.startswith("_"):
                continue
            shown = value if isinstance(value, str) else str(value)
            clean = redact(shown)
            if clean != shown:
                record.__dict__[key] = clean
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context ids and ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("session_id", session_id)):
            value = var.get()
            if value is not None:
                entry[name] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:  # already rendered (and redacted) by RedactSecrets
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Send every logger (uvicorn's too) to stderr as JSON lines at ``level``, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Chatter that would drown the manager's own lines: a line per httpx request, and two per
    # APScheduler job run (the lease job runs every few seconds). DEBUG keeps them.
    chatty = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "apscheduler"):
        logging.getLogger(name).setLevel(chatty)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """This request's id, so logs, processor and client see the same one (HTTP and WebSocket).

    The id already in the logging context (``RequestContext`` put it there) when it is a plain
    token, else the client's ``X-Request-ID`` when it is one, else a new id.
    """
    current = request_id.get()
    if current is not None and _REQUEST_ID.fullmatch(current):
        return current
    return client_request_id(headers)


def client_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a plain token, else a new id.

    For code running in no request's context of its own (the proxy's lane): a callback's
    context may be another request's (a transport's reader takes the context it is resumed
    in), and its id is not this request's.
    """
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return random_hex()


class RequestContext:
    """Middleware: ``request_id`` and ``session_id`` in the context, ``X-Request-ID`` on replies.

    The id is ``request_id_from``'s: the client's ``X-Request-ID`` when it is a plain token,
    else a new one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its ids in the logging context."""
        rid = request_id_from(scope["headers"])
        path: str = scope["path"]
        sid = path.split("/", 3)[2] if path.startswith("/session/") else None
        rid_token = request_id.set(rid)
        sid_token = session_id.set(None if sid == "create" else sid)
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append(header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(rid_token)
            session_id.reset(sid_token)
