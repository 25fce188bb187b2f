"""JSON-lines logging; ``request_id`` and ``session_id`` come from contextvars set per request."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = (
    "JsonFormatter",
    "RequestContext",
    "configure_logging",
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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Send every logger (uvicorn's too) to stderr as JSON lines at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
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
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


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
