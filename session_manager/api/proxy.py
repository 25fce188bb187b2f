"""The reverse proxy: ``ANY /session/{id}/{path}`` and ``WS /session/{id}/ws`` to the processor.

Both resolve the session (token, status, endpoint: ``Sessions.resolve``), then forward through
the app's ``Forwarder`` (``session_manager.proxy``) and move the idle deadline in the background
(``ActivityTracker``). The request id is ``log.request_id_from``'s, as for every route.

Hibernation is a barrier, and the proxy follows a session across it. The HTTP route is resolved
only once the request body is in, and a request that reaches a processor the hibernation has
fenced (503 ``PROCESSOR_FENCED``) or that finds it gone (connection refused or reset while the
session is no longer ``ready`` there) is resent, body and all, to wherever the session resolves
next: ``resolve`` waits for the hibernation and restores. Bounded by the start and stop
timeouts, then ``503 SESSION_NOT_READY`` with ``Retry-After``; a client never gets a 502 or a
504 for a session that is merely hibernating or being recovered. An open WebSocket
is closed by the fenced processor with 1012, passed on to the client (see ``proxy.websocket``).

WebSocket authentication: browsers cannot set headers on a WebSocket, so besides
``Authorization: Bearer <token>`` the token may be given as ``?token=<token>`` (it is not
passed on to the processor). When the session cannot be used, the socket is accepted and then
closed at once with ``4000 + HTTP status`` and the error code as reason, so the client can tell
why: 4401 UNAUTHORIZED, 4404 SESSION_NOT_FOUND, 4410 SESSION_EXPIRED, 4429 CAPACITY_EXCEEDED
(the session has ``PROXY_MAX_WEBSOCKETS_PER_SESSION`` sockets open), 4502
PROCESSOR_UNAVAILABLE, 4503 STORE_UNAVAILABLE or SESSION_NOT_READY, 4504 PROCESSOR_TIMEOUT.
After that, close codes and reasons pass through both ways; a processor that vanishes without
a close frame gives 1014.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, quote, urlencode

from litestar import Request, WebSocket, route, websocket
from litestar.enums import HttpMethod
from litestar.types import ASGIApp

from session_manager.errors import (
    KatoError,
    ManagerOnlyRoute,
    ProcessorUnavailable,
    ProcessorUnreachable,
    RouteStale,
    SessionNotReady,
)
from session_manager.log import request_id_from
from session_manager.proxy import READS, Forwarder, bridge_websockets, websocket_close_code
from session_manager.proxy.manager_only import is_manager_only

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

    from litestar.datastructures import State
    from litestar.types import HTTPScope, Scope
    from websockets.asyncio.client import ClientConnection

    from session_manager.clock import Clock
    from session_manager.proxy.http import Outgoing, ProxyResponse
    from session_manager.proxy.journaling import SocketJournal
    from session_manager.sessions import Sessions
    from session_manager.sessions.routing import ProcessorRoute
    from session_manager.settings import Settings

__all__ = (
    "PROXY_HANDLERS",
    "ProxiedRequest",
    "deliver",
    "move_deadline",
    "prepared",
    "processor_path",
    "proxy_http",
    "proxy_request",
    "proxy_websocket",
)

log = logging.getLogger(__name__)

_MOVE_PAUSE_S = 0.05
"""Pause before resending when the session still resolves to the processor that refused."""

_METHODS = [
    HttpMethod.GET,
    HttpMethod.HEAD,
    HttpMethod.POST,
    HttpMethod.PUT,
    HttpMethod.PATCH,
    HttpMethod.DELETE,
    HttpMethod.OPTIONS,
]


def _processor_path(scope: Scope) -> str:
    """The still-encoded path after ``/session/{id}`` (``%7C``, ``%2F`` reach the processor)."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        raw = quote(scope["path"]).encode()
    return processor_path(raw)


def processor_path(raw_path: bytes) -> str:
    """``_processor_path`` of a raw request target."""
    _, _, rest = raw_path.split(b"?", 1)[0].partition(b"/session/")
    _, _, tail = rest.partition(b"/")
    return "/" + tail.decode("latin-1")


@route(
    "/session/{session_id:str}/{path:path}",
    http_method=_METHODS,
    request_max_body_size=None,
    include_in_schema=False,
    name="session-proxy",
)
async def proxy_http(request: Request[Any, Any, Any]) -> ASGIApp:
    """Forward to the session's processor (``SessionProxyFront`` serves this route first).

    Reached only through an app without the front; Litestar still answers other methods 405.
    """
    session_id: str = request.path_params["session_id"]
    state = request.app.state
    return await proxy_request(state, request.scope, request.stream(), session_id)


async def proxy_request(
    state: State,
    scope: HTTPScope,
    chunks: AsyncIterator[bytes] | bytes,
    session_id: str,
    *,
    manager: bool = False,
) -> ProxyResponse:
    """The processor's answer to one request for ``session_id``: status, headers, body as-is.

    ``chunks`` is the request body as it arrives (or all of it, when it is already in).
    Raises the ``KatoError`` the client gets: ``ManagerOnlyRoute`` (404) for a processor
    route only the manager calls, unless the manager itself (``manager``: the v3 API's calls)
    is asking.
    """
    path = _processor_path(scope)
    if not manager and is_manager_only(path):
        raise ManagerOnlyRoute("no such route", path=path)
    sessions: Sessions = state.sessions
    forwarder: Forwarder = state.forwarder
    settings: Settings = state.settings
    headers = cast("list[tuple[bytes, bytes]]", scope["headers"])  # ASGI servers send a list
    authorization = content_length = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            content_length = value.decode("latin-1")
    # The route is resolved once the body is in: a hibernation that begins meanwhile is seen.
    body = await forwarder.read_body(chunks, content_length)
    query = scope["query_string"]
    request_id = request_id_from(headers)
    deadline = move_deadline(settings)
    processor = await sessions.resolve(session_id, authorization)
    forwarder.activity.mark(session_id, sessions.touch, state.clock.now_ms())
    request = ProxiedRequest(
        session_id, scope["method"], path, query, headers, body, request_id, authorization
    )
    # Only now (token checked) does the request take one of the session's in-flight slots.
    with forwarder.admitted(session_id):
        return await deliver(state, request, processor, deadline)


class ProxiedRequest:
    """One client request for a session's processor, as ``deliver`` sends (and resends) it."""

    __slots__ = (
        "authorization",
        "body",
        "headers",
        "method",
        "path",
        "query",
        "request_id",
        "session_id",
    )

    def __init__(
        self,
        session_id: str,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        authorization: str | None,
    ) -> None:
        self.session_id = session_id
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.request_id = request_id
        self.authorization = authorization


def prepared(
    forwarder: Forwarder,
    request: ProxiedRequest,
    processor: ProcessorRoute,
    *,
    static: bool = False,
) -> Outgoing:
    """``request`` framed for ``processor`` (``Forwarder.prepare``).

    A session's processor id is its session id (``Lifecycle.create``); a static processor's
    request is neither journaled nor given a secret.
    """
    session_id = None if static else request.session_id
    return forwarder.prepare(
        request.method,
        processor.endpoint,
        request.path,
        request.query,
        request.headers,
        request.body,
        request.request_id,
        session_id=session_id,
        processor_id=session_id,
        epoch=processor.epoch,
    )


async def deliver(
    state: State,
    request: ProxiedRequest,
    processor: ProcessorRoute,
    deadline: float,
    first: Awaitable[ProxyResponse] | None = None,
) -> ProxyResponse:
    """Forward ``request`` to ``processor``, following the session while it moves.

    ``first``: the answer of a first attempt already sent (``api.proxy_lane``), taken as
    ``forward``'s would be. A static processor's session is not journaled and has no secret.
    """
    sessions: Sessions = state.sessions
    forwarder: Forwarder = state.forwarder
    settings: Settings = state.settings
    session_id = request.session_id
    static = sessions.is_static(session_id)
    journaled = not static
    unsafe_to_resend = settings.processor_storage == "mongodb" and request.method not in READS
    while True:
        sent_ms = state.clock.now_ms()
        try:
            if first is not None:
                attempt, first = first, None
                response = await attempt
            else:
                response = await forwarder.forward(
                    prepared(forwarder, request, processor, static=static)
                )
        except RouteStale:
            # Answered by a processor the session replaced since the route was read
            # (another replica recovered it): fenced, not acknowledged. Sent again where
            # the session lives now, unless it may have reached a knowledge base that
            # outlives the processor (MongoDB).
            if unsafe_to_resend:
                raise ProcessorUnavailable(
                    "the session's processor was replaced while the request was applied",
                    session_id=session_id,
                ) from None
        except ProcessorUnavailable as exc:
            # Refused or reset. Not acknowledged, so not in the journal: resending it after
            # the session moved (hibernation) or was recovered (checkpoint plus journal)
            # applies it exactly once - unless it may have reached a knowledge base that
            # outlives the processor (MongoDB): a write reset after sending is then
            # answered 502, not resent.
            moved = await _lost_or_moved(sessions, session_id, processor, journaled, sent_ms)
            if not moved or (unsafe_to_resend and not isinstance(exc, ProcessorUnreachable)):
                raise
        else:
            if not response.is_fenced():
                return response
        processor = await _follow(sessions, session_id, request.authorization, processor, deadline)


async def _lost_or_moved(
    sessions: Sessions, session_id: str, left: ProcessorRoute, journaled: bool, sent_ms: int
) -> bool:
    """Whether a refused request is worth sending again: the session moved, or was recovered.

    Raises ``ProcessorOutOfMemory`` (507) when its processor exited at its memory limit since
    the request was sent (``sent_ms``): not sent again, whoever recovered the session.
    """
    if journaled:
        await sessions.check_out_of_memory(session_id, sent_ms)
    if await sessions.moved(session_id, left.endpoint):
        return True
    return journaled and await sessions.recover_lost(session_id, left.endpoint)


def move_deadline(settings: Settings) -> float:
    """Until when a request follows a moving session (as long as a restore may take)."""
    return time.monotonic() + settings.start_timeout_s + settings.stop_timeout_s


async def _follow(
    sessions: Sessions,
    session_id: str,
    authorization: str | None,
    left: ProcessorRoute,
    deadline: float,
) -> ProcessorRoute:
    """Where the session went after ``left`` refused (fenced, or gone): resolve again.

    Raises ``SessionNotReady`` (503, ``Retry-After``) once ``deadline`` has passed.
    """
    if time.monotonic() >= deadline:
        raise SessionNotReady("the session is still moving: retry shortly", session_id=session_id)
    sessions.forget_route(session_id)
    processor = await sessions.resolve(session_id, authorization)
    if processor.endpoint == left.endpoint:  # not moved yet (or the hibernation backed off)
        await asyncio.sleep(_MOVE_PAUSE_S)
    return processor


def _ws_credentials(socket: WebSocket[Any, Any, Any]) -> tuple[str | None, str]:
    """The session token (header, else ``?token=``) and the query string without the token."""
    raw_query: bytes = socket.scope["query_string"]
    authorization = socket.headers.get("authorization")
    if b"token=" not in raw_query:
        return authorization, raw_query.decode("latin-1")
    pairs = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)
    token = next((value for name, value in pairs if name == "token"), None)
    if authorization is None and token:
        authorization = f"Bearer {token}"
    return authorization, urlencode([(n, v) for n, v in pairs if n != "token"])


@websocket("/session/{session_id:str}/ws", name="session-ws-proxy")
async def proxy_websocket(socket: WebSocket[Any, Any, Any]) -> None:
    """Bridge the client's WebSocket to the processor's ``/ws`` until either side closes."""
    session_id: str = socket.path_params["session_id"]
    sessions: Sessions = socket.app.state.sessions
    forwarder: Forwarder = socket.app.state.forwarder
    request_id = request_id_from(socket.scope["headers"])
    authorization, query = _ws_credentials(socket)
    journal = (
        forwarder.journal.for_socket(session_id)
        if forwarder.journal is not None and not sessions.is_static(session_id)
        else None
    )
    try:
        upstream = await _open_upstream(socket, sessions, forwarder, authorization, query, journal)
    except KatoError as exc:
        log.info(
            "websocket refused",
            extra={"session_id": session_id, "code": exc.code, "request_id": request_id},
        )
        await socket.accept(headers={"X-Request-ID": request_id})
        await socket.close(*websocket_close_code(4000 + exc.status, exc.code))
        return
    try:
        await socket.accept(subprotocols=upstream.subprotocol, headers={"X-Request-ID": request_id})
        clock: Clock = socket.app.state.clock
        forwarder.activity.mark(session_id, sessions.touch, clock.now_ms())
        closed = await bridge_websockets(
            socket,
            upstream,
            lambda: forwarder.activity.mark(session_id, sessions.touch, clock.now_ms()),
            journal,
        )
        log.info(
            "websocket closed",
            extra={"session_id": session_id, "by": closed.by, "code": closed.code},
        )
    finally:
        await upstream.close()
        forwarder.websockets.leave(session_id)


async def _open_upstream(
    socket: WebSocket[Any, Any, Any],
    sessions: Sessions,
    forwarder: Forwarder,
    authorization: str | None,
    query: str,
    journal: SocketJournal | None,
) -> ClientConnection:
    """The processor's ``/ws``, following the session if it moves or is recovered meanwhile."""
    session_id: str = socket.path_params["session_id"]
    request_id = request_id_from(socket.scope["headers"])
    deadline = move_deadline(socket.app.state.settings)
    processor = await sessions.resolve(session_id, authorization)
    # Token checked: the socket counts against PROXY_MAX_WEBSOCKETS_PER_SESSION until it ends.
    forwarder.websockets.admit(session_id)
    try:
        while True:
            sent_ms = socket.app.state.clock.now_ms()
            try:
                upstream = await forwarder.websockets.connect(
                    processor.endpoint,
                    query,
                    socket.scope.get("subprotocols", []),
                    request_id,
                    journaled=journal is not None,
                    processor_id=None if sessions.is_static(session_id) else session_id,
                    epoch=processor.epoch,
                )
                if journal is not None:
                    journal.epoch = processor.epoch  # its frames are journaled only while current
                return upstream
            except ProcessorUnavailable:
                if not await _lost_or_moved(
                    sessions, session_id, processor, journal is not None, sent_ms
                ):
                    raise
            processor = await _follow(sessions, session_id, authorization, processor, deadline)
    except BaseException:
        forwarder.websockets.leave(session_id)
        raise


PROXY_HANDLERS = (proxy_http, proxy_websocket)
"""Route handlers ``create_app`` registers.

Litestar matches static segments first and does not fall back, so the manager's own routes
under a session win: ``GET``/``DELETE /session/{id}``, ``/session/{id}/keepalive`` (and
anything below it) and ``/session/{id}/ws``. The processor has no paths by those names.
"""
