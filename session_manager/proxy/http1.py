"""A lean HTTP/1.1 keep-alive client pool for the proxy's hot path: one exchange per socket.

Why not httpx here: on this path httpx's client, request and response models cost about
0.23 ms per proxied request and halve the proxy's throughput (measured with bench/proxy.py's
method against the same upstream). Processors speak plain HTTP/1.1 (TLS works too), and the
proxy needs exactly one thing: write a request it has already framed, read the response as it
comes. That is all this does; ``httptools`` (the parser uvicorn uses) does the parsing, but for
a plain whole answer in one read, which ``wire.parse_response`` takes apart in one call.

Network failures become ``ProcessorUnavailable`` (502) or ``ProcessorTimeout`` (504) here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from session_manager.errors import ProcessorTimeout, ProcessorUnavailable, ProcessorUnreachable
from session_manager.proxy.slots import FairSlots
from session_manager.proxy.wire import parse_response

__all__ = (
    "SOCKET_GONE",
    "Connection",
    "Endpoint",
    "Exchange",
    "Http1Pool",
    "Key",
    "RawHeaders",
    "parse_endpoint",
)

RawHeaders = list[tuple[bytes, bytes]]
Key = tuple[str, str, int]
"""Scheme, host, port: connections are shared per key."""

SOCKET_GONE = (FileNotFoundError, ConnectionRefusedError)
"""A processor's unix socket without a processor behind it: its port is tried instead."""

_PAUSE_ABOVE_BYTES = 256 * 1024
"""Stop reading from a processor while this much of its body waits for the client."""
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
"""Headers that frame a body: without them a response runs until the connection closes."""
_WHOLE_MAX_HEADERS = 256
"""More header lines than this in an answer go through httptools (``wire``)."""


class Connection(asyncio.Protocol):
    """One socket to a processor and the response being read on it."""

    def __init__(self, pool: Http1Pool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.expiry: asyncio.TimerHandle | None = None
        self.status = 0
        self.headers: RawHeaders = []
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        self._until_close = False
        self._head: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._readable = asyncio.Event()
        self._complete = False
        self._fed = False
        """The parser has had bytes of the current response (it is no longer between two)."""
        self._error: ProcessorUnavailable | ProcessorTimeout | None = None
        self._on_done: Callable[[], None] | None = None
        """``send``'s callback: the response is whole, failed, or too big to hold."""
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the socket (asyncio already turned Nagle off for TCP)."""
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Ends a body framed by the close; otherwise fails whatever waits on this socket."""
        self.closed = True
        self.reusable = False
        self.pool.forget(self)
        if self._until_close and self._head is not None and self._head.done():
            self._complete = True
            self._readable.set()
        elif self._parser is not None and not self._complete:
            self._fail("processor closed the connection mid-response")

    def data_received(self, data: bytes) -> None:
        """Feed the parser; bytes nobody asked for mean the socket cannot be trusted."""
        if self._parser is None or self._complete:
            self.close()
            return
        if not self._fed and not self._head_only and parse_response is not None:
            parts = parse_response(data, _WHOLE_MAX_HEADERS, _PAUSE_ABOVE_BYTES)
            if parts is not None:  # what httptools would give, callback by callback
                self._take_whole(*parts)
                return
        self._fed = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"invalid response from processor: {exc}")
            self.close()

    def _take_whole(self, status: int, headers: RawHeaders, body: bytes) -> None:
        """A plain answer, all in (``wire``): the callbacks' work at once.

        Framed by its length, so the socket is kept alive; never too big to hold (``on_body``).
        """
        self.status = status
        self.headers = headers
        self._head_in()
        if body:
            self.on_body(body)
        self._ended(reusable=True)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        """A response header."""
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """Status and headers are in; a HEAD answer ends here."""
        self.status = cast("httptools.HttpResponseParser", self._parser).get_status_code()
        self._until_close = not any(name.lower() in _FRAMING_HEADERS for name, _ in self.headers)
        if self._head_only:
            self._complete = True  # the parser would wait for a body: never reuse this socket
            self._readable.set()
        self._head_in()

    def on_body(self, body: bytes) -> None:
        """Queue a chunk; stop reading while the client is behind."""
        self._chunks.append(body)
        self._buffered += len(body)
        self._readable.set()
        if self._buffered > _PAUSE_ABOVE_BYTES and self.transport is not None:
            self.transport.pause_reading()
            self._done()  # too big to hold whole: ``send``'s caller streams it

    def on_message_complete(self) -> None:
        """The response is whole."""
        parser = cast("httptools.HttpResponseParser", self._parser)
        self._ended(reusable=not self._head_only and parser.should_keep_alive())

    def _head_in(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def _ended(self, *, reusable: bool) -> None:
        self.reusable = reusable
        self._complete = True
        self._readable.set()
        self._done()

    def _done(self) -> None:
        on_done = self._on_done
        if on_done is not None:
            self._on_done = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            on_done()

    # used by Exchange and the pool

    def _fail(
        self,
        message: str,
        error: type[ProcessorUnavailable | ProcessorTimeout] = ProcessorUnavailable,
    ) -> None:
        self._error = error(message)
        self.reusable = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(self._error)
        self._readable.set()
        self._done()

    def unread(self) -> bool:
        """Whether body bytes wait that nobody read (the reader stopped early)."""
        return bool(self._chunks)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _start(self, head_only: bool) -> None:
        if head_only or self._head_only or not self._complete or self._error is not None:
            # A fresh parser; otherwise the last one, between two whole responses, goes on.
            self._parser = httptools.HttpResponseParser(self)
        self._chunks.clear()
        self._buffered = 0
        self.headers = []
        self._head_only = head_only
        self._until_close = False
        self._complete = False
        self._fed = False
        self._error = None
        self.reusable = False

    def send(self, data: bytes, on_done: Callable[[], None], read_timeout_s: float) -> None:
        """Write one request; ``on_done`` follows once, without a task or a future.

        It is called when the response is whole, failed, or too big to hold (``whole`` tells),
        or after ``read_timeout_s`` without all of it. The proxy's lane (``api.proxy_lane``)
        carries on from it.
        """
        self._start(head_only=False)
        self._head = None
        self._on_done = on_done
        cast("asyncio.Transport", self.transport).write(data)
        self._timer = asyncio.get_running_loop().call_later(read_timeout_s, self._overdue)

    def _overdue(self) -> None:
        self._timer = None
        if self._on_done is not None:
            self._fail("processor did not answer in time", ProcessorTimeout)
            self.close()

    @property
    def error(self) -> ProcessorUnavailable | ProcessorTimeout | None:
        """Why the response failed, if it did."""
        return self._error

    @property
    def whole(self) -> bool:
        """Whether the response is whole and in (``send``'s caller may answer from it)."""
        return self._complete and self._error is None and not self._head_only

    @property
    def body_size(self) -> int:
        """Bytes of body received and not yet taken."""
        return self._buffered

    async def exchange(
        self,
        data: bytes,
        *,
        head_only: bool,
        read_timeout_s: float,
        sent: Callable[[], None] | None = None,
    ) -> None:
        """Write one request (then call ``sent``) and wait for the status line and headers."""
        if self.transport is None or self.closed:
            raise ProcessorUnreachable("processor closed the connection")
        self._start(head_only)
        loop = asyncio.get_running_loop()
        head = self._head = loop.create_future()
        self.transport.write(data)
        if sent is not None:
            sent()
        # A timer that fails the future, not ``asyncio.timeout`` (task cancellation and its
        # bookkeeping, a few µs on every proxied request).
        timer = loop.call_later(read_timeout_s, self._head_overdue, head)
        try:
            await head
        finally:
            timer.cancel()

    def _head_overdue(self, head: asyncio.Future[None]) -> None:
        if not head.done():
            head.set_exception(ProcessorTimeout("processor did not answer in time"))
            self.close()

    def whole_body(self) -> bytes | None:
        """The body if all of it is already in (a small answer, the common case), else ``None``.

        Taken at once, without the generators and timers of ``body``.
        """
        if not self._complete or self._error is not None:
            return None
        body = b"".join(self._chunks)
        self._chunks.clear()
        if self._buffered > _PAUSE_ABOVE_BYTES and self.transport is not None:
            self.transport.resume_reading()
        self._buffered = 0
        return body

    async def body(self, read_timeout_s: float) -> AsyncIterator[bytes]:
        """The response body as it arrives."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered <= _PAUSE_ABOVE_BYTES and self.transport is not None:
                    self.transport.resume_reading()
                yield chunk
            if self._error is not None:
                raise self._error
            if self._complete:
                return
            self._readable.clear()
            try:
                async with asyncio.timeout(read_timeout_s):
                    await self._readable.wait()
            except TimeoutError as exc:
                self.close()
                raise ProcessorTimeout("processor stopped sending its response") from exc


class Exchange:
    """A response whose headers are in; its body is read with ``read`` or ``chunks``.

    ``release`` must be called once done (reading to the end does it): it gives the socket
    back to the pool when the processor allows, and frees the in-flight slot.
    """

    __slots__ = ("_conn", "_read_timeout_s", "_released", "headers", "status")

    def __init__(self, conn: Connection, read_timeout_s: float) -> None:
        self._conn = conn
        self._read_timeout_s = read_timeout_s
        self._released = False
        self.status = conn.status
        self.headers = conn.headers

    async def chunks(self) -> AsyncGenerator[bytes]:
        """The body as it arrives; releases the socket at the end or on error."""
        try:
            async for chunk in self._conn.body(self._read_timeout_s):
                yield chunk
        finally:
            self.release()

    async def read(self) -> bytes:
        """The whole body."""
        body = self._conn.whole_body()
        if body is not None:
            self.release()
            return body
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self) -> None:
        """Hand the socket back (kept only if the response was read to its end)."""
        if not self._released:
            self._released = True
            self._conn.pool.release(self._conn)


class Http1Pool:
    """Keep-alive sockets per processor, capped in flight and idle.

    Requests in flight are shared fairly between processors (``slots.FairSlots``): one
    processor's requests, say a session whose clients never read their responses, cannot take
    every slot from the others. A slot is held from the request until its response is read to
    the end or released.

    Args:
        max_in_flight: requests on the wire at once; more wait up to the read timeout.
        max_in_flight_per_processor: of those, to one processor (``None``: no cap of its own).
        max_idle: idle sockets kept across all processors.
        keepalive_expiry_s: an idle socket is closed after this long (keep it under the
            processor's own keep-alive timeout, 5 s for uvicorn).
        connect_timeout_s: to open a socket (and finish TLS).
        read_timeout_s: to the response headers, and between body chunks.
        unix_socket: the unix socket a processor also listens on, if any (the process
            backend's ``ProcessorSockets.for_key``); used instead of its port when there.
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_idle: int,
        keepalive_expiry_s: float,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_in_flight_per_processor: int | None = None,
        unix_socket: Callable[[Key], str | None] | None = None,
    ) -> None:
        self._idle: dict[Key, list[Connection]] = {}
        self._unix_socket = unix_socket
        self._idle_count = 0
        self._max_idle = max_idle
        self._expiry_s = keepalive_expiry_s
        self._connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.slots = FairSlots(max_in_flight, max_in_flight_per_processor or max_in_flight)
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self, key: Key, data: bytes, *, method: str, sent: Callable[[], None] | None = None
    ) -> Exchange:
        """Send one request, framed by the caller, to the processor at ``key``.

        ``sent`` is called as soon as the request is written (not if it never is). Returns
        once the response headers are in; the caller must read or release it.
        """
        await self.slots.acquire(key, self.read_timeout_s)
        conn = None
        try:
            conn = self._reuse(key) or await self._connect(key)
            await conn.exchange(
                data, head_only=method == "HEAD", read_timeout_s=self.read_timeout_s, sent=sent
            )
        except BaseException:  # also cancellation: a half-done exchange must not be reused
            self.slots.release(key)
            if conn is not None:
                conn.close()
            raise
        return Exchange(conn, self.read_timeout_s)

    def take_idle(self, key: Key) -> Connection | None:
        """An idle socket to ``key`` and a slot, without waiting for either, else ``None``.

        For ``Connection.send``; given back with ``release`` (directly, or by an ``Exchange``).
        """
        if not self.slots.take_now(key):
            return None
        conn = self._reuse(key)
        if conn is None:
            self.slots.release(key)
        return conn

    def _reuse(self, key: Key) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if not idle:
                del self._idle[key]
            if conn.expiry is not None:
                conn.expiry.cancel()
                conn.expiry = None
            if not conn.closed:
                return conn
        return None

    async def _connect(self, key: Key) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        path = None if tls is not None or self._unix_socket is None else self._unix_socket(key)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if path is not None:
                    with contextlib.suppress(*SOCKET_GONE):
                        _, conn = await loop.create_unix_connection(
                            lambda: Connection(self, key), path
                        )
                        return conn
                _, conn = await loop.create_connection(
                    lambda: Connection(self, key), host, port, ssl=tls
                )
        except TimeoutError as exc:
            raise ProcessorUnreachable(
                "processor cannot be reached", reason="connect timeout"
            ) from exc
        except OSError as exc:  # ssl.SSLError included
            raise ProcessorUnreachable(
                "processor cannot be reached", reason=type(exc).__name__
            ) from exc
        return conn

    def release(self, conn: Connection) -> None:
        """Take a socket back after its response; keep it only if it can carry another."""
        self.slots.release(conn.key)
        if (
            conn.reusable
            and not conn.closed
            and not conn.unread()
            and self._idle_count < self._max_idle
        ):
            self._idle.setdefault(conn.key, []).append(conn)
            self._idle_count += 1
            conn.expiry = asyncio.get_running_loop().call_later(self._expiry_s, conn.close)
        else:
            conn.close()

    def forget(self, conn: Connection) -> None:
        """Drop a socket that closed while idle."""
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            self._idle_count -= 1
            if not idle:
                del self._idle[conn.key]
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None

    async def aclose(self) -> None:
        """Close every idle socket."""
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()
        self._idle_count = 0


class Endpoint(NamedTuple):
    """A processor base URL taken apart: pool key, ``Host`` header, path prefix."""

    key: Key
    host: bytes
    base_path: str


def parse_endpoint(endpoint: str) -> Endpoint:
    """Split ``http://host:port[/prefix]``; anything but http(s) is refused as unreachable."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProcessorUnavailable("processor endpoint is not an http(s) URL", endpoint=endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Endpoint(
        (parts.scheme, parts.hostname, port), parts.netloc.encode(), parts.path.rstrip("/")
    )
