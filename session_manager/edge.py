"""Limits on what a client may send before a request reaches the app (issue 13, finding 6).

uvicorn's httptools protocol buffers a request's headers without bound and waits for them
forever: one 128 MiB header grew the manager by 230 MiB, and connections sending a byte now and
then (slowloris) were held open indefinitely. ``edge_protocol`` returns the same protocol with
three limits, checked as bytes arrive:

* ``MAX_HEADER_BYTES``: request line and headers together; over it, ``431`` and the
  connection is closed (at most one read, 256 KiB, more is ever buffered);
* ``MAX_HEADERS``: header lines per request; over it, ``431`` too;
* ``HEADER_TIMEOUT_S``: from the connection's first byte (or its opening) to the end of the
  headers; over it, ``408`` and closed. Idle keep-alive connections keep uvicorn's own
  ``timeout_keep_alive``.

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
    "taken_body",
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

    def takes(self, method: bytes, url: bytes) -> bool:
        """Whether a request may be the lane's (asked once its headers are in)."""

    def start(self, call: LaneCall) -> bool:
        """Take the request, whole, or leave it to the app (``False``: nothing happened)."""


class LaneCall:
    """A request the lane took: its cycle, and the two ways to end it."""

    __slots__ = ("_protocol", "cycle")

    def __init__(self, protocol: HttpToolsProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self.cycle = cycle

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """Send the whole answer now (``answer_whole``); ``False``: ``hand_over`` instead."""
        return answer_whole(self.cycle, status, headers, body)

    def hand_over(self, app: Any) -> None:
        """Finish the request as an ASGI task running ``app`` (it has the body already)."""
        _start_in_own_context(self._protocol, self.cycle, app)


def _start_in_own_context(
    protocol: HttpToolsProtocol, cycle: RequestResponseCycle, app: Any
) -> None:
    """Start uvicorn's ASGI task for ``cycle`` in an empty context.

    A pipelined request's task is started by the previous one's answer, from inside that
    task: it would inherit its context (the logging context's request id, say, which then
    named the next request too). Each request starts with nothing set.
    """
    contextvars.Context().run(HttpToolsProtocol._start_asgi_task, protocol, cycle, app)


def edge_protocol(limits: EdgeLimits, lane: Lane | None = None) -> type[HttpToolsProtocol]:
    """The httptools protocol of uvicorn with ``limits`` applied (pass it as ``http=``).

    With a ``lane``, a request it ``takes`` by its head is offered to it whole once its body is
    in, before any ASGI task exists: the lane answers on the request cycle (or hands it over).
    A request whose body is not all in by the end of a read, or that the lane leaves, goes
    to the app as usual; uvicorn's request cycle, pipelining and keep-alive stay as they are.
    """

    class EdgeProtocol(_CutsOffSlowReaders, HttpToolsProtocol):
        """Counts header bytes and lines, and times the headers out."""

        _lane_cycle: RequestResponseCycle | None = None
        """A request the lane may take, held back from the app until its body is in."""
        _lane_app: Any = None
        _lane_timer: asyncio.TimerHandle | None = None

        _lane_wanted = False
        _in_headers = True
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
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._stop_lane_timer()
            self._lane_cycle = self._lane_app = None  # never started: nothing to finish
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering after a refusal: read and drop (see ``_refuse``)
            if self._in_headers and self._header_timer is None:
                self._arm()
            was_in_headers, messages = self._in_headers, self._messages
            super().data_received(data)
            if self._lane_cycle is not None and self._lane_timer is None:
                # Its body is still coming (a client may send it in a packet of its own):
                # the lane waits a moment for it, then leaves the request to the app.
                self._lane_timer = self.loop.call_later(_LANE_WAIT_S, self._release_lane_cycle)
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
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = self._header_count = self._parsed_bytes = 0

        def on_url(self, url: bytes) -> None:
            self._parsed_bytes += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            self._parsed_bytes += len(name) + len(value) + 4  # ": " and CRLF
            if self._header_count <= limits.max_headers:
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            if (
                self._header_count > limits.max_headers
                or self._parsed_bytes > limits.max_header_bytes
            ):
                self._refuse(_TOO_LARGE)
                return
            fresh = self.cycle is None or self.cycle.response_complete
            wanted = (
                lane is not None
                and fresh
                and not self.parser.should_upgrade()
                and lane.takes(self.parser.get_method(), self.url)
            )
            self._lane_wanted = wanted
            super().on_headers_complete()
            self._lane_wanted = False
            cycle = self.cycle
            # A HEAD answer has no body write to take its head along: it is not held.
            if (
                cycle is not None
                and cycle.transport is self.transport
                and self.scope["method"] != "HEAD"
            ):
                cycle.transport = _OneWriteResponse(self.transport, cycle)  # type: ignore[assignment]

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            if self._lane_wanted and not cycle.waiting_for_100_continue and cycle.keep_alive:
                self._lane_cycle, self._lane_app = cycle, app
                return
            _start_in_own_context(self, cycle, app)

        def _stop_lane_timer(self) -> None:
            if self._lane_timer is not None:
                self._lane_timer.cancel()
                self._lane_timer = None

        def _release_lane_cycle(self) -> None:
            self._stop_lane_timer()
            cycle, app = self._lane_cycle, self._lane_app
            self._lane_cycle = self._lane_app = None
            if cycle is not None:
                _start_in_own_context(self, cycle, app)

        def on_message_complete(self) -> None:
            if self._refused:
                return
            super().on_message_complete()
            cycle, app = self._lane_cycle, self._lane_app
            if cycle is not None and lane is not None:
                self._stop_lane_timer()
                self._lane_cycle = self._lane_app = None
                taken = False
                if not (cycle.response_complete or cycle.disconnected):
                    try:
                        taken = lane.start(LaneCall(self, cycle))
                    except Exception:  # never the client's fault: the app serves it instead
                        log.exception("proxy lane failed to start a request")
                if not taken:
                    _start_in_own_context(self, cycle, app)
            self._messages += 1
            self._in_headers = True  # the next request's headers, if it comes
            self._header_bytes = self._header_count = 0

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
            if self.cycle is not None and not self.cycle.response_complete:
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


def taken_body(cycle: RequestResponseCycle) -> bytes:
    """The request body the cycle holds, taken as its ``receive`` would hand it over."""
    cycle.flow.resume_reading()
    cycle.message_event.clear()
    body = bytes(cycle.body)
    cycle.body = bytearray()
    return body


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
    return taken_body(cycle)


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
    """``sent_whole`` on the request cycle itself (the lane's, or one behind ``receive``)."""
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
    content = [STATUS_LINE[status]]
    for name, value in cycle.default_headers:
        content.append(b"%s: %s\r\n" % (name, value))
    for name, value in headers:
        lowered = name.lower()  # as uvicorn writes them
        if lowered != b"content-length":
            content.append(b"%s: %s\r\n" % (lowered, value))
    content.append(b"content-length: %d\r\n" % len(body))
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content.append(b"\r\n")
    content.append(body)
    cycle.transport.write(b"".join(content))  # before ``response_started``: never held back
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
