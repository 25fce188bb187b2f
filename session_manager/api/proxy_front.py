"""``/session/{id}/{path}`` served in front of Litestar's router: the proxy's hot path.

Through Litestar, a proxied request paid for routing, a ``Request``, the handler's parameter
model, the exception middleware and ``RequestContext``'s wrapped ``send``: about a third of
the manager's CPU per proxied request. ``SessionProxyFront`` wraps the app's ASGI handler and
takes these requests first, doing exactly what that route did and nothing else: the request
and session ids in the logging context, the same ``proxy_request``, ``X-Request-ID`` on every
answer, and errors as the one error JSON (``KatoError``'s status, code and headers; anything
else a logged ``500 INTERNAL_ERROR``). Token check, ``X-Kato-*`` stripping, the processor's
secret, body caps, 503/410 answers and fence following are all ``proxy_request``'s, as before.

Everything else goes to Litestar unchanged: other methods (405 there), WebSockets, and the
manager's own routes under a session (``keepalive``, ``token``, ``ws``, read from the app's
routes so a new one is never shadowed).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litestar.serialization import encode_json

from session_manager import log as log_context
from session_manager.api.proxy import proxy_request
from session_manager.edge import arrived_body, sent_whole
from session_manager.errors import KatoError, error_body

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from litestar import Litestar
    from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

    from session_manager.proxy.http import ProxyResponse

__all__ = ("SessionProxyFront",)

log = logging.getLogger(__name__)

_PREFIX = "/session/"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _ClientGone(Exception):
    """The client disconnected before its body was in: there is no one to answer."""


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _reserved(app: Litestar) -> tuple[frozenset[str], frozenset[str]]:
    """Litestar's own names under ``/session/``: first segments, and segments after an id."""
    first, after_id = set(), set()
    for route in app.routes:
        parts = route.path.split("/")
        if len(parts) < 3 or parts[1] != "session":
            continue
        if not parts[2].startswith("{"):
            first.add(parts[2])
        elif len(parts) > 3 and not parts[3].startswith("{"):
            after_id.add(parts[3])
    return frozenset(first), frozenset(after_id)


class SessionProxyFront:
    """Raw ASGI in front of Litestar: proxied session requests first, the rest to ``app``."""

    def __init__(self, app: Litestar, inner: ASGIApp) -> None:
        self._app = app
        self._inner = inner
        self._first, self._after_id = _reserved(app)

    @classmethod
    def install(cls, app: Litestar) -> SessionProxyFront:
        """Put the front before ``app``'s router (inside Litestar's own ``__call__``)."""
        front = cls(app, app.asgi_handler)
        app.asgi_handler = front
        return front

    def _session_id(self, scope: Any) -> str | None:
        """The session id when this request is the proxy route's, else ``None``."""
        if scope["type"] != "http" or scope["method"] not in _METHODS:
            return None
        return self.session_id_in(scope["path"])

    def session_id_in(self, path: str) -> str | None:
        """The session id when ``path`` is the proxy route's, else ``None``."""
        if not path.startswith(_PREFIX):
            return None
        session_id, _, rest = path[len(_PREFIX) :].partition("/")
        tail = rest.rstrip("/").partition("/")[0]
        if not session_id or not tail or session_id in self._first or tail in self._after_id:
            return None
        return session_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a proxied request, or pass the connection on to Litestar."""
        session_id = self._session_id(scope)
        if session_id is None:
            await self._inner(scope, receive, send)
            return
        http: HTTPScope = scope  # type: ignore[assignment]

        def answer() -> Awaitable[ProxyResponse]:
            body = arrived_body(receive)
            return proxy_request(
                self._app.state, http, _body(receive) if body is None else body, session_id
            )

        await self.serve(http, receive, send, session_id, answer)

    async def serve(
        self,
        scope: HTTPScope,
        receive: Receive,
        send: Send,
        session_id: str,
        answer: Callable[[], Awaitable[ProxyResponse]],
    ) -> None:
        """Send ``answer()``'s response, or the error JSON it raised, with ``X-Request-ID``."""
        request_id = log_context.request_id_from(scope["headers"])
        rid_token = log_context.request_id.set(request_id)
        sid_token = log_context.session_id.set(session_id)
        try:
            try:
                response = await answer()
            except _ClientGone:
                return
            except KatoError as exc:
                await _error(send, request_id, exc.status, exc.code, exc.message, exc.details, exc)
                return
            except Exception:
                log.exception("unhandled error", extra={"path": scope["path"]})
                await _error(
                    send, request_id, 500, KatoError.code, "An unexpected error occurred", {}
                )
                return
            if response.stream is None and sent_whole(
                receive, response.status, response.headers, response.body
            ):
                return
            await response(scope, receive, send)
        finally:
            log_context.request_id.reset(rid_token)
            log_context.session_id.reset(sid_token)


async def _error(
    send: Send,
    request_id: str,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any],
    exc: KatoError | None = None,
) -> None:
    """The error JSON, as ``api.errors.error_response`` gives it through Litestar."""
    body = encode_json(error_body(status, code, message, details))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-request-id", request_id.encode()),
    ]
    if exc is not None:
        headers.extend(
            (name.lower().encode(), value.encode()) for name, value in exc.headers.items()
        )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
