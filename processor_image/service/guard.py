"""Only the manager that started this processor may talk to it (issue 13, finding 4).

Started with ``PROCESSOR_SECRET``, the processor requires it in ``X-Kato-Processor-Secret`` on
every request and WebSocket but ``GET /health`` (readiness probes, liveness checks), compared
in constant time: 401 without it. Another local process, or a browser page posting blindly to
``127.0.0.1:<port>``, cannot send it. The ``Host`` check stops DNS rebinding (a page whose name
now resolves to loopback still sends its own name): only loopback names and the names in
``ALLOWED_HOSTS`` (a container's name on a private network) are accepted, 421 otherwise.

Started without a secret (standalone ``docker run``, tests, a gateway's static processors) the
processor stays open, as before.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from processor_image.service.errors import error_body

__all__ = ("LOOPBACK_HOSTS", "SECRET_HEADER", "ASGIApp", "ManagerOnly", "host_name")

SECRET_HEADER = b"x-kato-processor-secret"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]
"""Plain ASGI (lifespan scopes pass through too, which Litestar's types do not describe)."""


def host_name(host: bytes) -> str:
    """The name part of a ``Host`` value (``[::1]:8000`` -> ``::1``), lower-cased."""
    value = host.decode("latin-1").strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class ManagerOnly:
    """ASGI middleware: the secret and ``Host`` checks in front of the whole app."""

    def __init__(self, app: ASGIApp, *, secret: str, allowed_hosts: Iterable[str]) -> None:
        self._app = app
        self._secret = secret.encode()
        self._hosts = LOOPBACK_HOSTS | {h.strip().lower() for h in allowed_hosts if h.strip()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or refuse it before the app sees it."""
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        host = secret = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == SECRET_HEADER:
                secret = value
        if host is None or host_name(host) not in self._hosts:
            await _refuse(scope, send, 421, "MISDIRECTED_REQUEST", "this Host is not served here")
            return
        is_health = scope["type"] == "http" and scope["path"] == "/health"
        if not is_health and (secret is None or not hmac.compare_digest(secret, self._secret)):
            await _refuse(scope, send, 401, "UNAUTHORIZED", "only the manager may call this")
            return
        await self._app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    """The service's usual error body; a WebSocket handshake is closed (1008) before accept."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    body = msgspec.json.encode(error_body(status, code, message))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
