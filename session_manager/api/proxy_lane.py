"""The proxy's lane: a session request served from callbacks, without an ASGI task.

A proxied request costs the manager more than the bytes it moves: a task, ASGI messages,
futures woken once per step. For the common request (a ``GET`` or ``POST`` that arrived whole,
for a session whose route and token are in memory, with a pooled socket to its processor
free) the edge (``edge.edge_protocol``) offers the request to ``ProxyLane.start`` as soon as
its body is in. The lane frames it as ``Forwarder.prepare`` does (journal entry ahead
included), writes it, and when the processor's answer is whole (``Connection.send``'s
callback) and the journal has nothing to wait for but Redis's acknowledgement, answers the
client on the same request cycle: the same bytes the ASGI path would send.

Everything else is left to the usual path, unchanged: before anything was sent the lane just
declines (the edge starts the ASGI task as always); after, it hands the request over as an
ASGI task whose first attempt is the one on its way (``api.proxy.deliver``'s ``first``), so
fences, moves, journal corrections, streaming and errors are handled by the one code that
handles them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from session_manager import log as log_context
from session_manager.api.proxy import (
    ProxiedRequest,
    deliver,
    move_deadline,
    prepared,
    processor_path,
)
from session_manager.edge import LaneCall
from session_manager.proxy.manager_only import is_manager_only

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import Receive, Scope, Send

    from session_manager.api.proxy_front import SessionProxyFront
    from session_manager.clock import Clock
    from session_manager.proxy.http import Forwarder, Outgoing, ProxyResponse
    from session_manager.proxy.http1 import Connection
    from session_manager.sessions import Sessions
    from session_manager.sessions.routing import ProcessorRoute
    from session_manager.settings import Settings

__all__ = ("ProxyLane",)

log = logging.getLogger(__name__)

_METHODS = frozenset({b"GET", b"POST"})


async def _ready(response: ProxyResponse) -> ProxyResponse:
    return response


async def _raise(exc: Exception) -> ProxyResponse:
    raise exc


class _InFlight:
    """One request the lane sent: what answering it, or handing it over, needs."""

    __slots__ = ("call", "deadline", "ended", "out", "processor", "request")

    def __init__(
        self,
        call: LaneCall,
        request: ProxiedRequest,
        processor: ProcessorRoute,
        out: Outgoing,
        deadline: float,
    ) -> None:
        self.call = call
        self.request = request
        self.processor = processor
        self.out = out
        self.deadline = deadline
        self.ended = False
        """The processor connection is settled (given back, or handed over with the answer)."""

    @property
    def session_id(self) -> str:
        return self.request.session_id


class _Parts:
    __slots__ = ("clock", "forwarder", "sessions", "settings")

    def __init__(
        self, forwarder: Forwarder, sessions: Sessions, clock: Clock, settings: Settings
    ) -> None:
        self.forwarder = forwarder
        self.sessions = sessions
        self.clock = clock
        self.settings = settings


class ProxyLane:
    """``edge.Lane`` for ``/session/{id}/…``: the proxy's hot path (see the module)."""

    def __init__(self, app: Litestar, front: SessionProxyFront) -> None:
        self._app = app
        self._front = front
        self._parts: _Parts | None = None
        self.answered = 0
        """Requests answered from the lane's callbacks."""
        self.handed_over = 0
        """Requests the lane sent and then handed over to the ASGI path."""

    def takes(self, method: bytes, url: bytes) -> str | None:
        """The session id of a ``GET`` or ``POST`` of a plain proxied path, else ``None``.

        Plain: no ``%`` (the path is the raw one), no ``#``.
        """
        if method not in _METHODS or not url.startswith(b"/session/") or b"#" in url:
            return None
        path = url.partition(b"?")[0]
        return None if b"%" in path else self._front.session_id_in(path.decode("latin-1"))

    def start(self, call: LaneCall) -> bool:
        """Send the request now, or ``False`` with nothing done (see the module)."""
        parts = self._parts or self._bind()
        if parts is None:
            return False
        forwarder = parts.forwarder
        session_id: str = call.taken
        if len(call.body) > forwarder.max_body_bytes:
            return False
        raw_path, _, query = call.url.partition(b"?")
        path = processor_path(raw_path)
        if is_manager_only(path):
            return False
        headers = call.headers
        authorization = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        processor = parts.sessions.cached_route(session_id, authorization)
        if processor is None:
            return False
        conn = forwarder.idle_connection(processor.endpoint)
        if conn is None:
            return False
        if not forwarder.admit(session_id):
            forwarder.give_back(conn)
            return False
        request = ProxiedRequest(
            session_id,
            call.method.decode("ascii"),
            path,
            query,
            headers,
            call.body,
            log_context.client_request_id(headers),  # never a context's: see there
            authorization,
        )
        out = prepared(forwarder, request, processor)
        forwarder.send_on(conn, out, lambda: self._answered(flight, conn))
        # Called back once the processor answered: what it needs is made while it works.
        flight = _InFlight(call, request, processor, out, move_deadline(parts.settings))
        try:  # while the processor works; sent, the request is the lane's whatever happens
            forwarder.activity.mark(session_id, parts.sessions.touch, parts.clock.now_ms())
        except Exception:
            log.exception("idle deadline not moved", extra={"session_id": session_id})
        return True

    @property
    def _forwarder(self) -> Forwarder:
        """Once a request was started (``_bind`` then succeeded)."""
        assert self._parts is not None  # noqa: S101
        return self._parts.forwarder

    def _bind(self) -> _Parts | None:
        """The app's parts, read once they exist (Litestar's ``state`` is slow to read)."""
        state = self._app.state
        try:
            self._parts = _Parts(state.forwarder, state.sessions, state.clock, state.settings)
        except AttributeError:  # still starting: the app answers (its startup is awaited)
            return None
        return self._parts

    def _answered(self, flight: _InFlight, conn: Connection) -> None:
        """The processor's answer is in (or failed): answer the client, or hand over.

        Called from the processor connection's parser: nothing may escape from here (the
        client would wait for an answer that never comes). A lane bug answers 500.
        """
        try:
            self._answer(flight, conn)
        except Exception as exc:
            log.exception("proxy lane failed to answer", extra={"session_id": flight.session_id})
            if not flight.ended:
                conn.close()
                flight.ended = True
                self._forwarder.give_back(conn)
                self._hand_over(flight, _raise(exc))

    def _answer(self, flight: _InFlight, conn: Connection) -> None:
        forwarder = self._forwarder
        out = flight.out
        response = forwarder.conclude_now(out, conn)
        if response is None:
            write = out.write
            reply = None if write is None else write.reply
            if reply is not None and not reply.done() and conn.whole:
                reply.add_done_callback(lambda _: self._answered(flight, conn))
                return  # the answer waits for Redis's acknowledgement of the entry ahead
            error = conn.error
            flight.ended = True
            if error is not None:
                forwarder.give_back(conn)
            first = forwarder.conclude(
                out, None if error is not None else forwarder.exchange(conn), error
            )
            self._hand_over(flight, first)
            return
        flight.ended = True
        try:
            answered = not response.is_fenced() and flight.call.answer(
                response.status, response.headers, response.body
            )
        finally:  # the journal's bookkeeping of the write, whatever happened
            forwarder.settle_now(out, conn)
        if not answered:
            self._hand_over(flight, _ready(response))
            return
        forwarder.leave(flight.request.session_id)
        self.answered += 1

    def _hand_over(self, flight: _InFlight, first: Any) -> None:
        """Finish as an ASGI task: ``deliver`` takes ``first`` as its first attempt's answer."""
        state = self._app.state
        request = flight.request
        self.handed_over += 1

        async def answer() -> ProxyResponse:
            try:
                return await deliver(state, request, flight.processor, flight.deadline, first)
            finally:
                state.forwarder.leave(request.session_id)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            log_context.request_id.set(request.request_id)  # the id the processor got
            await self._front.serve(
                scope,  # type: ignore[arg-type]
                receive,
                send,
                request.session_id,
                answer,
            )

        flight.call.hand_over(app)
