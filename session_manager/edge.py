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
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

__all__ = ("EdgeLimits", "edge_protocol")


class EdgeLimits:
    """The three limits; one instance per server."""

    __slots__ = ("header_timeout_s", "max_header_bytes", "max_headers")

    def __init__(self, *, max_header_bytes: int, max_headers: int, header_timeout_s: float) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.header_timeout_s = header_timeout_s


def _reply(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(message), message)
    )


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


def edge_protocol(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """The httptools protocol of uvicorn with ``limits`` applied (pass it as ``http=``)."""

    class EdgeProtocol(HttpToolsProtocol):
        """Counts header bytes and lines, and times the headers out."""

        _in_headers = True
        _header_bytes = 0
        _header_count = 0
        _header_timer: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering after a refusal: read and drop (see ``_refuse``)
            if self._in_headers and self._header_timer is None:
                self._arm()
            was_in_headers = self._in_headers
            super().data_received(data)
            if self._refused or self.transport.is_closing():
                return
            if was_in_headers and self._in_headers:
                self._header_bytes += len(data)
            if self._header_bytes > limits.max_header_bytes or (
                self._header_count > limits.max_headers
            ):
                self._refuse(_TOO_LARGE)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = self._header_count = 0

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            if self._header_count <= limits.max_headers:
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            if self._header_count > limits.max_headers:
                self._refuse(_TOO_LARGE)
                return
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
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._refused:
                return
            super().on_message_complete()
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
