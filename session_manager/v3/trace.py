"""``X-Trace-ID`` on every v3 response: the request's own, else ``kato-`` and 32 hex digits."""

from __future__ import annotations

import re
import secrets
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ("TraceId",)

_HEADER = b"x-trace-id"
_PLAIN = re.compile(rb"[\x21-\x7e]{1,128}")
"""A trace id worth echoing: printable ASCII without spaces, bounded."""


class TraceId:
    """ASGI middleware of the v3 routes (and their error answers)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the trace id to the response's headers as it starts."""
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        given = next((v for n, v in scope["headers"] if n == _HEADER), None)
        trace = given if given is not None and _PLAIN.fullmatch(given) else None
        value = trace or b"kato-" + secrets.token_hex(16).encode()

        async def traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((_HEADER, value))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, traced)
