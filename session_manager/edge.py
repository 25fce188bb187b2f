"""Limits on what a client may send before a request reaches the app (issue 13, finding 6).

uvicorn's httptools protocol buffers a request's headers without bound and waits for them
forever: one 128 MiB header grew the manager by 230 MiB, and connections sending a byte now and
then (slowloris) were held open indefinitely. ``edge_protocol`` returns the same protocol with
three limits, checked as bytes arrive:

* ``MAX_HEADER_BYTES``: request line and headers together; over it, ``431`` and the
  connection is closed (at most one read, 256 KiB, more is ever buffered);
* ``MAX_HEADERS``: header lines per request; over it, ``431`` too;
* ``HEADER_TIMEOUT_S``: from the connection's opening, or the first read that ends within a
  request's headers, to the end of them; over it, ``408`` and closed. Idle keep-alive
  connections keep uvicorn's own ``timeout_keep_alive``.

For the proxy's hot path, ``arrived_body`` and ``sent_whole`` do what a request cycle's
``receive`` and two ``send`` calls would, directly on it, when the request body is already in
and the answer is whole (see their docstrings); anything else goes through ASGI as usual.

And one limit on what a client must take: ``CLIENT_WRITE_TIMEOUT_S``. uvicorn applies
backpressure (an app's ``send`` waits while the socket's write buffer is above its high-water
mark) but waits forever, so a client that never reads its response held the proxy's upstream
connection, its pool slot and the processor's reply indefinitely. ``edge_protocol`` and
``edge_websocket_protocol`` abort a connection whose write buffer stays full that long (an
abort, not a close: a close waits for the buffer to drain, which it never does). The app's
pending ``send`` then returns (HTTP) or raises ``ClientDisconnected`` (WebSocket), and the proxy
lets go of the processor (``proxy.http.ProxyResponse``, ``proxy.websocket``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from session_manager.proxy.wire import parse_request, whole

__all__ = (
    "EdgeLimits",
    "Lane",
    "LaneCall",
    "WriteDeadline",
    "answer_whole",
    "arrived_body",
    "edge_protocol",
    "edge_websocket_protocol",
    "sent_whole",
)

log = logging.getLogger(__name__)


class EdgeLimits:
    """The edge's limits; one instance per server."""

    __slots__ = ("header_timeout_s", "max_header_bytes", "max_headers", "write_timeout_s")

    def __init__(
        self,
        *,
        max_header_bytes: int,
        max_headers: int,
        header_timeout_s: float,
        write_timeout_s: float = 30.0,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.header_timeout_s = header_timeout_s
        self.write_timeout_s = write_timeout_s


class WriteDeadline:
    """Aborts a connection whose client has not taken its bytes for ``timeout_s``.

    Armed when the transport pauses writing (buffer over the high-water mark), disarmed when
    it resumes (the client read enough to get under the low-water mark) or the connection ends.
    """

    __slots__ = ("_timeout_s", "_timer", "_transport")

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def paused(self, transport: asyncio.Transport) -> None:
        """The client stopped keeping up: start the clock."""
        if self._timer is None:
            self._transport = transport
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._timeout_s, self._expired)

    def resumed(self) -> None:
        """The client read (or the connection is gone): stop the clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._transport is not None:  # closing or not: a close would wait for the buffer
            peer = self._transport.get_extra_info("peername")
            log.warning(
                "client did not read its response: connection aborted",
                extra={"client": str(peer), "timeout_s": self._timeout_s},
            )
            self._transport.abort()


def _reply(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(message), message)
    )


class _CutsOffSlowReaders(asyncio.Protocol):
    """A server protocol whose client is cut off once it reads nothing for ``write_timeout_s``."""

    transport: asyncio.Transport
    write_timeout_s: float
    _write_deadline: WriteDeadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._write_deadline = WriteDeadline(self.write_timeout_s)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._write_deadline.resumed()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_deadline.paused(self.transport)

    def resume_writing(self) -> None:
        self._write_deadline.resumed()
        super().resume_writing()


_LANE_WAIT_S = 0.05
"""How long a request the lane may take waits for the rest of its body before it goes to the
app (whose ``BODY_READ_TIMEOUT_S`` then applies)."""

_LINGER_S = 1.0
"""How long a refused connection's further bytes are read and dropped before it is closed."""

_TOO_LARGE = _reply(b"431 Request Header Fields Too Large", b"request headers too large")
_TOO_SLOW = _reply(b"408 Request Timeout", b"request headers not received in time")


class _OneWriteResponse:
    """A response cycle's transport that sends a response's head with its first body bytes.

    uvicorn writes the head and the body separately: two sends, and a client woken twice, for
    every small answer (the proxy's hot path). Held only after the response started (so a
    ``100 Continue`` goes at once), and never past a close; every answer but a HEAD one writes
    its body (an empty one too), which takes the head along.
    """

    __slots__ = ("_cycle", "_held", "_holding", "transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self.transport = transport
        self._cycle = cycle
        self._held = b""
        self._holding = True

    def write(self, data: bytes) -> None:
        if self._holding and self._cycle.response_started:
            self._holding = False
            self._held = data  # the head: it waits for the body
            return
        if self._held:
            data, self._held = self._held + data, b""
        self.transport.write(data)

    def close(self) -> None:
        if self._held:
            self.transport.write(self._held)
            self._held = b""
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class Lane(Protocol):
    """Serves some requests without an ASGI task (``api.proxy_lane``): see ``edge_protocol``."""

    def takes(self, method: bytes, url: bytes) -> Any:
        """Whether a request may be the lane's, asked once its headers are in.

        ``None`` if not, else what ``start`` will find in ``LaneCall.taken``.
        """

    def start(self, call: LaneCall) -> bool:
        """Take the request, whole, or leave it to the app (``False``: nothing happened)."""


class _Intake:
    """A request as the parser gave it, held back from uvicorn: the lane's, or queued behind it.

    While a request is replayed into uvicorn it also stands in for the parser: uvicorn asks
    the parser about the message it is handling, which the real one may have left behind.
    """

    __slots__ = (
        "body",
        "complete",
        "expects",
        "for_lane",
        "headers",
        "headers_done",
        "keep_alive",
        "method",
        "size",
        "taken",
        "upgrade",
        "url",
        "version",
    )

    def __init__(self, for_lane: bool) -> None:
        self.for_lane = for_lane
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.expects = False
        self.headers_done = False
        self.complete = False
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.upgrade = False
        self.taken: Any = None

    def get_method(self) -> bytes:
        return self.method

    def get_http_version(self) -> str:
        return self.version

    def should_keep_alive(self) -> bool:
        return self.keep_alive

    def should_upgrade(self) -> bool:
        return self.upgrade


class _LaneEdge(Protocol):
    def lane_answer(
        self, call: LaneCall, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bool: ...

    def lane_hand_over(self, call: LaneCall, app: Any) -> None: ...


class LaneCall:
    """A request the lane took, parsed but never seen by uvicorn, and the two ways to end it."""

    __slots__ = ("_edge", "_intake", "body", "headers", "method", "taken", "url")

    def __init__(self, edge: _LaneEdge, intake: _Intake) -> None:
        self._edge = edge
        self._intake = intake
        self.method = intake.method
        self.url = intake.url
        self.taken = intake.taken
        """What ``Lane.takes`` said of it."""
        self.headers = intake.headers
        """Names lowercased, as uvicorn gives them to an app."""
        self.body = intake.body[0] if len(intake.body) == 1 else b"".join(intake.body)

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """Send the whole answer now, in one write; ``False``: ``hand_over`` instead."""
        return self._edge.lane_answer(self, status, headers, body)

    def hand_over(self, app: Any) -> None:
        """Finish the request as an ASGI task running ``app`` (it has the body already)."""
        self._edge.lane_hand_over(self, app)


def _start_in_own_context(
    protocol: HttpToolsProtocol, cycle: RequestResponseCycle, app: Any
) -> None:
    """Start uvicorn's ASGI task for ``cycle`` in an empty context.

    A pipelined request's task is started by the previous one's answer, from inside that
    task: it would inherit its context (the logging context's request id, say, which then
    named the next request too). Each request starts with nothing set.
    """
    contextvars.Context().run(HttpToolsProtocol._start_asgi_task, protocol, cycle, app)


_LANE_MAX_BODY = 1 << 20
"""A body past this goes to the app as it comes (the lane's own limit is the proxy's)."""


def edge_protocol(limits: EdgeLimits, lane: Lane | None = None) -> type[HttpToolsProtocol]:
    """The httptools protocol of uvicorn with ``limits`` applied (pass it as ``http=``).

    With a ``lane``, a request that may be its own (nothing else in progress on the
    connection) is parsed without uvicorn: its head, then its body, are held (``_Intake``).
    Whole, it is offered to the lane (``Lane.start``), which writes the answer itself
    (``LaneCall.answer``) or hands it over as an ASGI task (``LaneCall.hand_over``). A request
    the lane does not take, or whose body is not all in within ``_LANE_WAIT_S``, is replayed
    into uvicorn's callbacks as it was parsed, and goes on as any other. While the lane holds
    a request, what follows on the connection waits (reading paused), so answers keep their
    order; uvicorn's request cycle, pipelining and keep-alive are otherwise unchanged.
    """

    class EdgeProtocol(_CutsOffSlowReaders, HttpToolsProtocol):
        """Counts header bytes and lines, times the headers out, and feeds the lane."""

        _intake: _Intake | None = None
        """The request being parsed, held back from uvicorn."""
        _lane_call: LaneCall | None = None
        """The request the lane took: sent, not yet answered or handed over."""
        _queued: list[_Intake]
        """Requests parsed while the lane holds one, for uvicorn once it is done."""
        _held = b""
        """Bytes read while the lane holds a request (reading is paused)."""
        _handed_app: Any = None
        _lane_timer: asyncio.TimerHandle | None = None
        _lost = False
        _closing = False
        """The server is shutting down: the lane's answer closes the connection."""

        _in_headers = True
        _header_open = False
        """A request's head has begun and not ended (its headers are timed)."""
        _header_bytes = 0
        _header_count = 0
        _header_timer: asyncio.TimerHandle | None = None
        _refused = False
        _messages = 0
        """Requests parsed whole so far: one that ends within a read was no header block."""
        _parsed_bytes = 0
        """The request line's target and headers as parsed: a request that arrived in one read
        (never counted by reads, see ``data_received``) is measured by this."""
        write_timeout_s = limits.write_timeout_s

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            # uvicorn logs access lines whenever its logger has a handler, the root's included
            # (the manager's JSON lines): ``access_log=False`` is meant, so it is honoured.
            self.access_log = self.access_log and self.config.access_log
            self._queued = []
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._lost = True
            self._disarm()
            self._stop_lane_timer()
            self._intake = None  # not taken: nothing to finish
            self._queued = []
            self._held = b""
            super().connection_lost(exc)

        def shutdown(self) -> None:
            if self._lane_call is not None:
                self._closing = True  # its answer says ``connection: close``, then closes
                return
            self._release_intake()
            super().shutdown()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering after a refusal: read and drop (see ``_refuse``)
            if self._lane_call is not None or self._held or self._queued:
                # The lane's answer goes first, then what came before these bytes.
                self._held += data
                self.flow.pause_reading()
                return
            if (
                parse_request is not None
                and self._in_headers
                and not self._header_open
                and self._lane_free()
            ):
                parts = parse_request(data, limits.max_headers, limits.max_header_bytes)
                if parts is not None:  # one plain request, all of this read (``wire``)
                    self._unset_keepalive_if_required()
                    self._take_whole(*parts)
                    return
            was_in_headers, messages = self._in_headers, self._messages
            super().data_received(data)
            if self._header_open and self._header_timer is None:
                self._arm()  # this read ended within a request's headers: they are timed
            intake = self._intake
            if intake is not None and intake.for_lane and self._lane_timer is None:
                # Its body is still coming (a client may send it in a packet of its own):
                # the lane waits a moment for it, then leaves the request to the app.
                self._lane_timer = self.loop.call_later(_LANE_WAIT_S, self._release_intake)
            if self._refused or self.transport.is_closing():
                return
            # Still in headers after this read, and no request ended within it (a whole
            # request, body included, in one read is back "in headers" for the next one).
            if was_in_headers and self._in_headers and self._messages == messages:
                self._header_bytes += len(data)
            if self._header_bytes > limits.max_header_bytes or (
                self._header_count > limits.max_headers
            ):
                self._refuse(_TOO_LARGE)

        def on_message_begin(self) -> None:
            self._in_headers = self._header_open = True
            self._header_bytes = self._header_count = self._parsed_bytes = 0
            if self._lane_call is not None:  # pipelined behind the lane's request
                self._intake = _Intake(for_lane=False)
                self._queued.append(self._intake)
                return
            if self._lane_free():
                self._intake = _Intake(for_lane=True)
                return
            super().on_message_begin()

        def _lane_free(self) -> bool:
            """The next request may be the lane's: nothing else is under way on the connection."""
            return (
                lane is not None
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
                and not self._closing
            )

        def _take_whole(
            self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes
        ) -> None:
            """A whole request parsed in one call: what the callbacks would have built, at once."""
            self._disarm()
            self._messages += 1
            intake = _Intake(for_lane=True)
            intake.method, intake.url, intake.headers = method, url, headers
            if body:
                intake.body.append(body)
                intake.size = len(body)
            intake.headers_done = intake.complete = True
            if intake.size <= _LANE_MAX_BODY and self._lane_may_take(intake):
                self._start_lane(intake)
            else:
                self._replay(intake)

        def on_url(self, url: bytes) -> None:
            self._parsed_bytes += len(url)
            if self._intake is not None:
                self._intake.url += url
                return
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            self._parsed_bytes += len(name) + len(value) + 4  # ": " and CRLF
            if self._header_count > limits.max_headers:
                return
            intake = self._intake
            if intake is None:
                super().on_header(name, value)
                return
            name = name.lower()  # as uvicorn keeps them
            if name == b"expect":
                intake.expects = True
            intake.headers.append((name, value.rstrip(b" \t")))

        def on_headers_complete(self) -> None:
            self._in_headers = self._header_open = False
            self._disarm()
            if (
                self._header_count > limits.max_headers
                or self._parsed_bytes > limits.max_header_bytes
            ):
                self._refuse(_TOO_LARGE)
                return
            intake = self._intake
            if intake is None:
                self._headers_to_uvicorn()
                return
            parser = self.parser
            intake.method = parser.get_method()
            intake.version = parser.get_http_version()
            intake.keep_alive = parser.should_keep_alive()
            intake.upgrade = parser.should_upgrade()
            intake.headers_done = True
            if not intake.for_lane:
                if intake.upgrade:  # an upgrade pipelined behind the lane's request: refused
                    self.transport.close()
                return
            if not self._lane_may_take(intake):
                self._intake = None
                self._replay(intake)

        def _lane_may_take(self, intake: _Intake) -> bool:
            limit = self.limit_concurrency
            if (
                lane is None
                or intake.version != "1.1"
                or not intake.keep_alive
                or intake.upgrade
                or intake.expects
                or self.root_path
                or (
                    limit is not None
                    and (len(self.connections) >= limit or len(self.tasks) >= limit)
                )
            ):
                return False
            intake.taken = lane.takes(intake.method, intake.url)
            return intake.taken is not None

        def _headers_to_uvicorn(self) -> None:
            super().on_headers_complete()
            cycle = self.cycle
            # A HEAD answer has no body write to take its head along: it is not held.
            if (
                cycle is not None
                and cycle.transport is self.transport
                and self.scope["method"] != "HEAD"
            ):
                cycle.transport = _OneWriteResponse(self.transport, cycle)  # type: ignore[assignment]

        def on_body(self, body: bytes) -> None:
            if self._refused:
                return
            intake = self._intake
            if intake is None:
                super().on_body(body)
                return
            intake.body.append(body)
            intake.size += len(body)
            if intake.for_lane and intake.size > _LANE_MAX_BODY:
                self._release_intake()

        def on_message_complete(self) -> None:
            if self._refused:
                return
            intake = self._intake
            if intake is None:
                super().on_message_complete()
            else:
                intake.complete = True
                self._intake = None
                if intake.for_lane:
                    self._stop_lane_timer()
                    self._start_lane(intake)
            self._messages += 1
            self._in_headers = True  # the next request's headers, if it comes
            self._header_bytes = self._header_count = 0

        def _start_lane(self, intake: _Intake) -> None:
            assert lane is not None  # noqa: S101
            call = LaneCall(self, intake)
            self._lane_call = call
            taken = False
            try:
                taken = lane.start(call)
            except Exception:  # never the client's fault: the app serves it instead
                log.exception("proxy lane failed to start a request")
            if not taken:
                self._lane_call = None
                self._replay(intake)

        def _replay(self, intake: _Intake, app: Any = None) -> None:
            """Give uvicorn the request as the parser gave it (``app``: the one to run)."""
            parser, self.parser = self.parser, intake  # type: ignore[assignment]
            self._handed_app = app
            try:
                HttpToolsProtocol.on_message_begin(self)
                HttpToolsProtocol.on_url(self, intake.url)
                for name, value in intake.headers:
                    HttpToolsProtocol.on_header(self, name, value)
                if intake.headers_done:
                    self._headers_to_uvicorn()
                    for chunk in intake.body:
                        HttpToolsProtocol.on_body(self, chunk)
                    if intake.complete:
                        HttpToolsProtocol.on_message_complete(self)
            finally:
                self.parser, self._handed_app = parser, None

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            _start_in_own_context(self, cycle, self._handed_app or app)

        def _should_upgrade(self) -> bool:
            return self._lane_call is None and super()._should_upgrade()

        def lane_answer(
            self, call: LaneCall, status: int, headers: list[tuple[bytes, bytes]], body: bytes
        ) -> bool:
            if (
                self._lane_call is not call
                or self._lost
                or self.flow.write_paused
                or self.access_log
                or status in (204, 304)
                or status not in STATUS_LINE
            ):
                return False
            self._lane_call = None
            keep_alive = not self._closing
            self.transport.write(
                whole(
                    STATUS_LINE[status],
                    self.server_state.default_headers,
                    headers,
                    body,
                    keep_alive,
                )
            )
            if not keep_alive:
                self.transport.close()
            self.on_response_complete()  # counts it; on a closing connection, nothing more
            if keep_alive:
                self._after_lane()
            return True

        def lane_hand_over(self, call: LaneCall, app: Any) -> None:
            if self._lane_call is call:
                self._lane_call = None
            self._replay(call._intake, app)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                if self._lost:
                    cycle.disconnected = True
                    cycle.message_event.set()
                if self._closing:
                    cycle.keep_alive = False
            self._after_lane()

        def _after_lane(self) -> None:
            if (self._queued or self._held) and not self._lost:
                # Not from inside the processor connection's callback that ended the request,
                # nor in its context (another request's logging context, say).
                self.loop.call_soon(self._resume_after_lane, context=contextvars.Context())

        def _resume_after_lane(self) -> None:
            if self._lost or self._lane_call is not None:
                return
            queued, self._queued = self._queued, []
            if queued and self._intake is queued[-1]:
                self._intake = None  # its rest, still to read, goes to uvicorn
            for intake in queued:
                self._replay(intake)
            held, self._held = self._held, b""
            if held:
                self.flow.resume_reading()
                self.data_received(held)

        def _stop_lane_timer(self) -> None:
            if self._lane_timer is not None:
                self._lane_timer.cancel()
                self._lane_timer = None

        def _release_intake(self) -> None:
            """The lane's request is not all in: it goes to the app, its rest as it comes."""
            self._stop_lane_timer()
            intake = self._intake
            if intake is not None and intake.for_lane:
                self._intake = None
                self._replay(intake)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self._in_headers or self.transport.is_closing():
                return
            if self._lane_call is not None or (
                self.cycle is not None and not self.cycle.response_complete
            ):
                return  # a response is still on its way: never cut it off
            self._refuse(_TOO_SLOW if self._header_bytes or self.cycle is not None else b"")

        def _refuse(self, reply: bytes) -> None:
            if self._refused:
                return
            self._refused = True
            self._disarm()
            if not reply:
                self.transport.close()
                return
            # Lingering close: closing with unread bytes would reset the connection and the
            # client might never read the reply. Send it, end our side, drop what still comes
            # for a moment, then close.
            self.transport.write(reply)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)

    return EdgeProtocol


def edge_websocket_protocol(limits: EdgeLimits) -> type[WebSocketsSansIOProtocol]:
    """The sans-I/O WebSocket protocol of uvicorn with the write deadline (pass it as ``ws=``)."""

    class EdgeWebSocketProtocol(_CutsOffSlowReaders, WebSocketsSansIOProtocol):
        """Aborts a WebSocket whose client stops reading its frames."""

        write_timeout_s = limits.write_timeout_s

    return EdgeWebSocketProtocol


def _cycle(receive: Any) -> RequestResponseCycle | None:
    """The httptools request cycle behind an ASGI ``receive``, when it is one."""
    cycle = getattr(receive, "__self__", None)
    return cycle if type(cycle) is RequestResponseCycle else None


def arrived_body(receive: Any) -> bytes | None:
    """The whole request body when uvicorn already has all of it, else ``None``.

    A small request arrives in one read, parsed before the app runs: its body is taken from
    the request cycle as its ``receive`` would hand it over (reading resumed, the event
    cleared), without a body generator and the timer a body still on its way needs. A body
    that waits for ``100 Continue``, or any other server, goes through ``receive``.
    """
    cycle = _cycle(receive)
    if (
        cycle is None
        or cycle.more_body
        or cycle.disconnected
        or cycle.waiting_for_100_continue
        or cycle.response_complete
        or not cycle.message_event.is_set()
    ):
        return None
    cycle.flow.resume_reading()
    cycle.message_event.clear()
    body = bytes(cycle.body)
    cycle.body = bytearray()
    return body


def sent_whole(receive: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Send a whole answer in one write, as uvicorn's two ``send`` calls would; whether it did.

    Only on the edge's own httptools cycle, for an answer not yet started to a client that is
    keeping up (``send`` would wait for it to drain), not to ``HEAD`` (no body) and without
    an access log: then it is uvicorn's own sequence without its per-header checks (the
    headers are the processor's, already parsed, and the manager's own) and the ASGI
    messages. ``content-length`` is the body's. Otherwise ``False``: the caller sends.
    """
    cycle = _cycle(receive)
    return cycle is not None and answer_whole(cycle, status, headers, body)


def answer_whole(
    cycle: RequestResponseCycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> bool:
    """``sent_whole`` on the request cycle itself."""
    if (
        cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
        or cycle.scope["method"] == "HEAD"
        or status in (204, 304)
        or status not in STATUS_LINE
    ):
        return False
    # before ``response_started``: never held back
    cycle.transport.write(
        whole(STATUS_LINE[status], cycle.default_headers, headers, body, cycle.keep_alive)
    )
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
