"""Forwarding to processors: one pooled httpx client, hop-by-hop filtering, WebSocket frame pumps.

HTTP: the client's method, path, query, body and end-to-end headers go to the processor; the
processor's status, content type, body and end-to-end headers come back. Hop-by-hop headers
(RFC 9110 §7.6.1 and whatever ``Connection`` names) and the session token never cross.
Transport errors become ``ProcessorUnavailable`` (502) or ``ProcessorTimeout`` (504) here,
never in handlers.

WebSocket: one pump per direction copies text and binary frames as they are; whichever side
closes first, its close code and reason are passed to the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import httptools
import httpx
import msgspec
from litestar.exceptions import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from session_manager.errors import (
    KatoError,
    PayloadTooLarge,
    ProcessorTimeout,
    ProcessorUnavailable,
)

if TYPE_CHECKING:
    from litestar.connection import WebSocket
    from litestar.types import Receive, Scope, Send
    from prometheus_client import Counter, Histogram

__all__ = (
    "ActivityTracker",
    "Closed",
    "Forwarder",
    "ProxyMetrics",
    "ProxyResponse",
    "bridge_websockets",
    "request_id_from",
    "websocket_close_code",
)

log = logging.getLogger(__name__)

RawHeaders = list[tuple[bytes, bytes]]
Touch = Callable[[str], Awaitable[None]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Headers that describe one connection, not the message (RFC 9110 §7.6.1)."""

_NOT_FORWARDED = HOP_BY_HOP | {
    b"authorization",
    b"host",
    b"content-length",
    b"expect",
    b"x-request-id",
}
"""Request headers the proxy drops or rewrites: the session token, what httpx sets itself, and
``Expect`` (the body is read before forwarding, the manager's server answers ``100``)."""

_NOT_RETURNED = HOP_BY_HOP | {b"content-length", b"date", b"server"}
"""Response headers the manager's own server sets (one ``Date``, one ``Server``)."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_STREAM_ABOVE_BYTES = 256 * 1024
"""Responses bigger than this (or of unknown size) are streamed instead of buffered."""

_CLOSE_REASON_BYTES = 123


class ProxyMetrics(Protocol):
    """The two metrics the proxy updates (``session_manager.metrics.Metrics`` has them)."""

    @property
    def proxy_requests(self) -> Counter:
        """Proxied requests by ``status``."""
        ...

    @property
    def proxy_latency(self) -> Histogram:
        """Seconds from forwarding a request to the processor's response headers."""
        ...


class ProxySettings(Protocol):
    """The settings the forwarder reads (fields of ``session_manager.settings.Settings``)."""

    @property
    def proxy_connect_timeout_s(self) -> float:
        """Connecting to a processor (HTTP and WebSocket)."""
        ...

    @property
    def proxy_read_timeout_s(self) -> float:
        """Waiting for a processor's response."""
        ...


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _forwarded_headers(
    headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes] | set[bytes]
) -> RawHeaders:
    """End-to-end headers only: ``drop`` and every header named in ``Connection`` are removed."""
    headers = list(headers)
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    if named:
        drop = drop | named
    return [(name, value) for name, value in headers if name.lower() not in drop]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a processor, carrying one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
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
        self._error: httpx.TransportError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the socket (asyncio already turned Nagle off for TCP)."""
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """The processor closed or reset: ends a body framed by the close, else fails the wait."""
        self.closed = True
        if self._until_close and self._head is not None and self._head.done():
            self._complete = True
            self._readable.set()
        elif self._parser is not None and not self._complete:
            self._fail(httpx.RemoteProtocolError("processor closed the connection mid-response"))

    def data_received(self, data: bytes) -> None:
        """Feed the parser; bytes nobody asked for mean the connection cannot be trusted."""
        if self._parser is None or self._complete:
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid response from processor: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        """Parser callback."""
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """Parser callback: status and headers are in; a HEAD answer ends here."""
        self.status = cast("httptools.HttpResponseParser", self._parser).get_status_code()
        names = {name.lower() for name, _ in self.headers}
        self._until_close = not names & {b"content-length", b"transfer-encoding"}
        if self._head_only:
            self._complete = True  # the parser would wait for a body: never reuse this one
            self._readable.set()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        """Parser callback: queue a chunk, and stop reading while the consumer is behind."""
        self._chunks.append(body)
        self._buffered += len(body)
        self._readable.set()
        if self._buffered > _STREAM_ABOVE_BYTES and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        """Parser callback: the response is whole."""
        parser = cast("httptools.HttpResponseParser", self._parser)
        self.reusable = not self._head_only and parser.should_keep_alive()
        self._complete = True
        self._readable.set()

    def _fail(self, error: httpx.TransportError) -> None:
        self._error = error
        self.reusable = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._readable.set()

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.reusable = False
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes, *, head_only: bool, read_timeout: float | None) -> None:
        """Write one request and wait until the status line and headers are in."""
        if self.transport is None or self.closed:
            raise httpx.RemoteProtocolError("processor closed the connection")
        self._parser = httptools.HttpResponseParser(self)
        self.headers = []
        self._head_only = head_only
        self._until_close = False
        self._complete = False
        self.reusable = False
        self._head = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            async with asyncio.timeout(read_timeout):
                await self._head
        except TimeoutError as exc:
            self.close()
            raise httpx.ReadTimeout("processor did not answer in time") from exc

    async def body(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        """The response body as it arrives."""
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered <= _STREAM_ABOVE_BYTES and self.transport is not None:
                    self.transport.resume_reading()
                yield chunk
            if self._error is not None:
                raise self._error
            if self._complete:
                return
            self._readable.clear()
            try:
                async with asyncio.timeout(read_timeout):
                    await self._readable.wait()
            except TimeoutError as exc:
                self.close()
                raise httpx.ReadTimeout("processor stopped sending its response") from exc


class _Body(httpx.AsyncByteStream):
    """A response body read straight off a pooled connection, which it gives back on close."""

    def __init__(
        self, pool: _Http1Transport, key: tuple[str, int], conn: _Connection, timeout: float | None
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self._timeout = timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Chunks as the processor sends them."""
        async for chunk in self._conn.body(self._timeout):
            yield chunk

    async def aclose(self) -> None:
        """Hand the connection back (kept alive if the response was read to its end)."""
        if not self._released:
            self._released = True
            self._pool.release(self._key, self._conn)


class _Http1Transport(httpx.AsyncBaseTransport):
    """A lean HTTP/1.1 keep-alive transport for plain-HTTP processors (httptools parser).

    httpcore's general pool costs about a quarter millisecond per request; the proxy's hot path
    needs only one exchange at a time per connection, so this does just that. ``limits``
    caps requests in flight (``max_connections``) and idle sockets kept
    (``max_keepalive_connections``, closed after ``keepalive_expiry``).
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._max_idle = limits.max_keepalive_connections or 0
        self._expiry = limits.keepalive_expiry or 0.0
        self._slots = asyncio.Semaphore(limits.max_connections or 1_000_000)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One exchange on a pooled (or new) connection."""
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        key = (url.host, url.port or 80)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("too many requests in flight to processors") from exc
        try:
            conn = self._reuse(key) or await self._connect(key, timeouts.get("connect"))
            head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
            head.extend(b"%s: %s\r\n" % pair for pair in request.headers.raw)
            head.append(b"\r\n")
            head.append(await request.aread())
            await conn.send(
                b"".join(head),
                head_only=request.method == "HEAD",
                read_timeout=timeouts.get("read"),
            )
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(self, key, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _reuse(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if not conn.closed and now - conn.idle_since < self._expiry:
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, int], connect_timeout_s: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout_s):
                _, conn = await loop.create_connection(_Connection, key[0], key[1])
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        return conn

    def release(self, key: tuple[str, int], conn: _Connection) -> None:
        """Take a connection back after its response; keep it only if it can carry another."""
        self._slots.release()
        if conn.reusable and not conn.closed and self._idle_count < self._max_idle:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
            self._idle_count += 1
        else:
            conn.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._idle_count = 0


class ProxyResponse:
    """The processor's answer as an ASGI app: status, headers and body passed through unchanged."""

    __slots__ = ("_stream", "body", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: RawHeaders,
        body: bytes = b"",
        stream: httpx.Response | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response; a streamed body is copied then its connection is closed."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        if self._stream is None:
            await send({"type": "http.response.body", "body": self.body, "more_body": False})
            return
        try:
            async for chunk in self._stream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError:
            log.warning("processor response cut off", exc_info=True)
            raise
        finally:
            await self._stream.aclose()


class ActivityTracker:
    """Moves idle deadlines off the request path, with at most one touch in flight per session.

    A request that arrives while its session's touch is still in flight adds nothing: that touch
    already moves the deadline to within one Redis round trip of now.
    """

    def __init__(self) -> None:
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    def mark(self, session_id: str, touch: Touch) -> None:
        """Note activity: ``touch`` runs in the background unless one for the session already is."""
        if session_id not in self._in_flight:
            self._in_flight[session_id] = asyncio.create_task(self._touch(session_id, touch))

    def throttled(
        self, session_id: str, touch: Touch, now_ms: Callable[[], int], interval_ms: int
    ) -> Callable[[], None]:
        """A ``mark`` for one long-lived connection that fires at most once per ``interval_ms``."""
        last = now_ms()

        def mark() -> None:
            nonlocal last
            now = now_ms()
            if now - last >= interval_ms:
                last = now
                self.mark(session_id, touch)

        return mark

    async def _touch(self, session_id: str, touch: Touch) -> None:
        try:
            await touch(session_id)
        except Exception:
            log.warning("idle deadline not moved", extra={"session_id": session_id}, exc_info=True)
        finally:
            del self._in_flight[session_id]

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Let the touches in flight finish (bounded), e.g. before shutdown or in tests."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=timeout_s)


class Forwarder:
    """Sends requests to processors over one shared keep-alive pool; built once in the lifespan."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        metrics: ProxyMetrics,
        *,
        connect_timeout_s: float,
        max_body_bytes: int,
    ) -> None:
        self._client = client
        self._requests = metrics.proxy_requests
        self._latency = metrics.proxy_latency
        self.connect_timeout_s = connect_timeout_s
        self.max_body_bytes = max_body_bytes
        self.activity = ActivityTracker()

    @classmethod
    def from_settings(cls, settings: ProxySettings, metrics: ProxyMetrics) -> Forwarder:
        """The forwarder for these settings; ``MAX_PROXY_BODY_BYTES`` bounds bodies both ways."""
        max_body_bytes: int = getattr(settings, "max_proxy_body_bytes", _DEFAULT_MAX_BODY_BYTES)
        # Processors (uvicorn) drop idle connections after 5 s: expire ours first, so a
        # request never lands on a connection the processor is closing.
        limits = httpx.Limits(
            max_connections=getattr(settings, "proxy_max_connections", 512),
            max_keepalive_connections=256,
            keepalive_expiry=4.0,
        )
        client = httpx.AsyncClient(
            transport=_Http1Transport(limits),
            mounts={"https://": httpx.AsyncHTTPTransport(limits=limits, trust_env=False)},
            timeout=httpx.Timeout(
                settings.proxy_read_timeout_s, connect=settings.proxy_connect_timeout_s
            ),
            trust_env=False,
            follow_redirects=False,
        )
        # httpx adds Accept, Accept-Encoding and User-Agent of its own; a proxy sends the client's.
        for name in ("accept", "accept-encoding", "user-agent"):
            del client.headers[name]
        return cls(
            client,
            metrics,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            max_body_bytes=max_body_bytes,
        )

    async def aclose(self) -> None:
        """Let pending deadline moves finish, then close the pooled connections."""
        await self.activity.drain()
        await self._client.aclose()

    async def forward(
        self,
        method: str,
        endpoint: str,
        path: str,
        query: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
    ) -> ProxyResponse:
        """Send one request to ``endpoint + path`` and return the processor's response.

        Args:
            method: HTTP method, passed through.
            endpoint: the processor's base URL, e.g. ``http://127.0.0.1:41234``.
            path: the path on the processor, already percent-encoded, starting with ``/``.
            query: the raw query string (without ``?``).
            headers: the client's raw request headers; filtered here.
            body: the request body.
            request_id: sent as ``X-Request-ID`` and returned the same way.

        Raises:
            ProcessorUnavailable: the processor could not be reached or dropped the connection.
            ProcessorTimeout: the processor did not answer within ``PROXY_READ_TIMEOUT_S``.
        """
        url = f"{endpoint}{path}?{query.decode('latin-1')}" if query else f"{endpoint}{path}"
        outgoing = _forwarded_headers(headers, _NOT_FORWARDED)
        outgoing.append((b"x-request-id", request_id.encode()))
        started = time.perf_counter()
        status = "error"
        try:
            with _processor_errors():
                request = self._client.build_request(method, url, headers=outgoing, content=body)
                upstream = await self._client.send(request, stream=True)
                status = str(upstream.status_code)
                response = await self._response(method, upstream, request_id)
        except KatoError as exc:
            status = str(exc.status)
            raise
        finally:
            self._requests.labels(status=status).inc()
            self._latency.observe(time.perf_counter() - started)
        return response

    async def _response(
        self, method: str, upstream: httpx.Response, request_id: str
    ) -> ProxyResponse:
        """Buffer a small body (the common case), stream a big or open-ended one."""
        raw = upstream.headers.raw
        headers = _forwarded_headers(raw, _NOT_RETURNED)
        headers.append((b"x-request-id", request_id.encode()))
        length = upstream.headers.get("content-length")
        if method == "HEAD" or upstream.status_code in (204, 304):
            if length is not None:
                headers.append((b"content-length", length.encode()))
            await upstream.aclose()
            return ProxyResponse(upstream.status_code, headers)
        if length is not None and length.isdigit() and int(length) <= _STREAM_ABOVE_BYTES:
            try:
                chunks = [chunk async for chunk in upstream.aiter_raw()]
            finally:
                await upstream.aclose()
            body = b"".join(chunks)
            headers.append((b"content-length", str(len(body)).encode()))
            return ProxyResponse(upstream.status_code, headers, body)
        if length is not None:
            headers.append((b"content-length", length.encode()))
        return ProxyResponse(upstream.status_code, headers, stream=upstream)

    async def read_body(self, chunks: AsyncIterator[bytes], declared_length: str | None) -> bytes:
        """The whole request body, refused with 413 once it is over ``MAX_PROXY_BODY_BYTES``."""
        limit = self.max_body_bytes
        if (
            declared_length is not None
            and declared_length.isdigit()
            and int(declared_length) > limit
        ):
            raise PayloadTooLarge("request body too large", limit_bytes=limit)
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge("request body too large", limit_bytes=limit)
            parts.append(chunk)
        return b"".join(parts)

    async def connect_websocket(
        self,
        endpoint: str,
        query: str,
        subprotocols: Sequence[str],
        request_id: str,
    ) -> ClientConnection:
        """An open WebSocket to the processor's ``/ws``; failures map like HTTP ones.

        The caller closes it (``bridge_websockets`` does, whichever side ends first).
        """
        scheme = "wss" if endpoint.startswith("https:") else "ws"
        url = f"{scheme}:{endpoint.split(':', 1)[1]}/ws" + (f"?{query}" if query else "")
        try:
            return await connect(
                url,
                additional_headers={"X-Request-ID": request_id},
                subprotocols=[Subprotocol(p) for p in subprotocols] or None,
                compression=None,
                proxy=None,
                user_agent_header=None,
                open_timeout=self.connect_timeout_s,
                max_size=self.max_body_bytes,
            )
        except TimeoutError as exc:
            raise ProcessorTimeout("processor did not accept the WebSocket in time") from exc
        except InvalidStatus as exc:
            raise ProcessorUnavailable(
                "processor refused the WebSocket", status=exc.response.status_code
            ) from exc
        except (OSError, InvalidHandshake) as exc:
            raise ProcessorUnavailable(
                "processor cannot be reached", reason=type(exc).__name__
            ) from exc


@contextlib.contextmanager
def _processor_errors() -> Iterator[None]:
    """Translate httpx transport errors into the manager's processor errors."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ProcessorUnavailable("processor cannot be reached", reason="connect timeout") from exc
    except httpx.TimeoutException as exc:
        raise ProcessorTimeout(
            "processor did not answer in time", reason=type(exc).__name__
        ) from exc
    except httpx.TransportError as exc:
        raise ProcessorUnavailable(
            "processor cannot be reached", reason=type(exc).__name__
        ) from exc


class Closed(msgspec.Struct, frozen=True):
    """How a proxied WebSocket ended: which side closed first, with what code and reason."""

    by: str
    code: int
    reason: str


def websocket_close_code(code: int | None, reason: str, *, abnormal: int = 1014) -> tuple[int, str]:
    """A close code and reason fit to send on, reason cut to 123 bytes.

    Codes that only report what happened are replaced: no status (1005) by 1000; a dropped
    connection (1006) or failed TLS (1015) by ``abnormal`` (1014 "bad gateway" towards the
    client, 1001 "going away" towards the processor).
    """
    if code is None or code == 1005:
        code = 1000
    elif code in (1006, 1015):
        code = abnormal
    encoded = reason.encode()
    if len(encoded) > _CLOSE_REASON_BYTES:
        reason = encoded[:_CLOSE_REASON_BYTES].decode(errors="ignore")
    return code, reason


async def _client_to_processor(
    socket: WebSocket[Any, Any, Any], upstream: ClientConnection, on_frame: Callable[[], None]
) -> Closed:
    while True:
        message: dict[str, Any] = dict(await socket.receive())
        if message["type"] == "websocket.disconnect":
            return Closed("client", message.get("code", 1005), message.get("reason") or "")
        on_frame()
        text: str | None = message.get("text")
        data: str | bytes | None = text if text is not None else message.get("bytes")
        if data is None:
            continue
        try:
            await upstream.send(data)
        except ConnectionClosed as exc:
            return _processor_closed(exc)


async def _processor_to_client(
    socket: WebSocket[Any, Any, Any], upstream: ClientConnection
) -> Closed:
    while True:
        try:
            data = await upstream.recv()
        except ConnectionClosed as exc:
            return _processor_closed(exc)
        try:
            if isinstance(data, str):
                await socket.send({"type": "websocket.send", "text": data, "bytes": None})
            else:
                await socket.send({"type": "websocket.send", "text": None, "bytes": data})
        except (WebSocketDisconnect, OSError):
            return Closed("client", 1001, "")


def _processor_closed(exc: ConnectionClosed) -> Closed:
    if exc.rcvd is None:
        return Closed("processor", 1006, "")
    return Closed("processor", exc.rcvd.code, exc.rcvd.reason)


async def bridge_websockets(
    socket: WebSocket[Any, Any, Any], upstream: ClientConnection, on_frame: Callable[[], None]
) -> Closed:
    """Copy frames both ways until one side closes, then close the other with the same code.

    ``socket`` must be accepted. ``on_frame`` runs for every client frame (idle deadline).
    """
    pumps = {
        asyncio.create_task(_client_to_processor(socket, upstream, on_frame)),
        asyncio.create_task(_processor_to_client(socket, upstream)),
    }
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    closed = next(iter(done)).result()
    if closed.by == "client":
        await upstream.close(*websocket_close_code(closed.code, closed.reason, abnormal=1001))
    else:
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await socket.close(*websocket_close_code(closed.code, closed.reason))
    return closed
