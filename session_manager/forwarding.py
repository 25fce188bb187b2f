"""Forwarding to processors: one shared keep-alive pool, hop-by-hop filtering, WebSocket pumps.

HTTP: the client's method, path, query, body and end-to-end headers go to the processor; the
processor's status, content type, body and end-to-end headers come back. Hop-by-hop headers
(RFC 9110 §7.6.1 and whatever ``Connection`` names) and the session token never cross.
Network errors become ``ProcessorUnavailable`` (502) or ``ProcessorTimeout`` (504) in the
pool (``_http1``), never in handlers.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar.exceptions import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from session_manager import log as log_context
from session_manager._http1 import Endpoint, Exchange, Http1Pool, RawHeaders, parse_endpoint
from session_manager.errors import (
    KatoError,
    PayloadTooLarge,
    ProcessorTimeout,
    ProcessorUnavailable,
)

if TYPE_CHECKING:
    from litestar.connection import WebSocket
    from litestar.types import Receive, Scope, Send

    from session_manager.metrics import Metrics
    from session_manager.settings import Settings

__all__ = (
    "ActivityTracker",
    "Closed",
    "Forwarder",
    "ProxyResponse",
    "bridge_websockets",
    "request_id_from",
    "websocket_close_code",
)

log = logging.getLogger(__name__)

Touch = Callable[[str], Awaitable[None]]

_HOP_BY_HOP = frozenset(
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

_NOT_FORWARDED = _HOP_BY_HOP | {
    b"authorization",
    b"host",
    b"content-length",
    b"expect",
    b"x-request-id",
}
"""Request headers the proxy drops or rewrites: the session token, framing it sets itself, and
``Expect`` (the body is read before forwarding, the manager's server answers ``100``)."""

_NOT_RETURNED = _HOP_BY_HOP | {b"content-length", b"date", b"server"}
"""Response headers the manager's own server sets (one ``Date``, one ``Server``)."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_STREAM_ABOVE_BYTES = 256 * 1024
"""Responses bigger than this (or of unknown size) are streamed instead of buffered."""

_CLOSE_REASON_BYTES = 123
_TOUCH_INTERVAL_MS = 1000
"""A session's idle deadline is written at most once a second, however busy it is."""
_REMEMBERED_ENDPOINTS = 4096
_TRACKED_SESSIONS = 10_000
"""Past this many remembered touch times, the ones old enough to no longer matter are dropped."""


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """This request's id, so logs, processor and client see the same one.

    The id in the logging context (``RequestContext``) when it is a plain token, else the
    client's ``X-Request-ID`` when it is one, else a new id.
    """
    current = log_context.request_id.get()
    if current is not None and _REQUEST_ID.fullmatch(current):
        return current
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


class ProxyResponse:
    """The processor's answer as an ASGI app: status, headers and body passed through unchanged."""

    __slots__ = ("body", "headers", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: RawHeaders,
        body: bytes = b"",
        stream: Exchange | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response; a streamed body is copied chunk by chunk as it arrives."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        if self.stream is None:
            await send({"type": "http.response.body", "body": self.body, "more_body": False})
            return
        try:
            async for chunk in self.stream.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except KatoError:
            log.warning("processor response cut off", exc_info=True)
            raise
        finally:
            self.stream.release()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ActivityTracker:
    """Moves idle deadlines off the request path: at most one touch per session per interval.

    The touch runs in the background, never on the request path. Activity within
    ``interval_ms`` of the session's last touch (by the app's clock), or while a touch is in
    flight, adds nothing: a busy session costs one Redis write per interval, and its idle
    deadline trails its last activity by less than the interval.
    """

    def __init__(self, interval_ms: int = _TOUCH_INTERVAL_MS) -> None:
        self._interval_ms = interval_ms
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, int] = {}

    def mark(self, session_id: str, touch: Touch, now_ms: int) -> None:
        """Note activity on ``session_id`` at ``now_ms``; ``touch`` runs if it is due."""
        last = self._last.get(session_id)
        if session_id in self._in_flight or (
            last is not None and now_ms - last < self._interval_ms
        ):
            return
        self._last[session_id] = now_ms
        if len(self._last) > _TRACKED_SESSIONS:
            self._last = {s: t for s, t in self._last.items() if now_ms - t < self._interval_ms}
        self._in_flight[session_id] = asyncio.create_task(self._touch(session_id, touch))

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
        pool: Http1Pool,
        metrics: Metrics,
        *,
        connect_timeout_s: float,
        max_body_bytes: int,
    ) -> None:
        self._pool = pool
        self._requests = metrics.proxy_requests
        self._latency = metrics.proxy_latency
        self.connect_timeout_s = connect_timeout_s
        self.max_body_bytes = max_body_bytes
        self.activity = ActivityTracker()
        self._endpoints: dict[str, Endpoint] = {}

    def _endpoint(self, endpoint: str) -> Endpoint:
        """``parse_endpoint``, remembered (bounded: cleared when it grows past a few thousand)."""
        parsed = self._endpoints.get(endpoint)
        if parsed is None:
            if len(self._endpoints) >= _REMEMBERED_ENDPOINTS:
                self._endpoints.clear()
            parsed = self._endpoints[endpoint] = parse_endpoint(endpoint)
        return parsed

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Forwarder:
        """The forwarder for these settings.

        ``MAX_PROXY_BODY_BYTES`` bounds request bodies and WebSocket messages (responses are
        streamed); ``PROXY_MAX_CONNECTIONS`` caps requests in flight to processors.
        """
        pool = Http1Pool(
            max_in_flight=settings.proxy_max_connections,
            max_idle=256,
            # Processors (uvicorn) drop idle connections after 5 s: expire ours first, so a
            # request never lands on a connection the processor is closing.
            keepalive_expiry_s=4.0,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            read_timeout_s=settings.proxy_read_timeout_s,
        )
        return cls(
            pool,
            metrics,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            max_body_bytes=settings.max_proxy_body_bytes,
        )

    async def aclose(self) -> None:
        """Let pending deadline moves finish, then close the pooled connections."""
        await self.activity.drain()
        await self._pool.aclose()

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
        started = time.perf_counter()
        status = "error"
        try:
            target = self._endpoint(endpoint)
            rid = request_id.encode()
            lines = [
                b"%s %s%s%s HTTP/1.1\r\nhost: %s\r\n"
                % (
                    method.encode(),
                    target.base_path.encode(),
                    path.encode("latin-1"),
                    b"?" + query if query else b"",
                    target.host,
                )
            ]
            lines.extend(
                b"%s: %s\r\n" % pair for pair in _forwarded_headers(headers, _NOT_FORWARDED)
            )
            if body or method in ("POST", "PUT", "PATCH"):
                lines.append(b"content-length: %d\r\n" % len(body))
            lines.append(b"x-request-id: %s\r\n\r\n" % rid)
            lines.append(body)
            exchange = await self._pool.request(target.key, b"".join(lines), method=method)
            status = str(exchange.status)
            response = await self._response(method, exchange, rid)
        except KatoError as exc:
            status = str(exc.status)
            raise
        finally:
            self._requests.labels(status=status).inc()
            self._latency.observe(time.perf_counter() - started)
        return response

    async def _response(self, method: str, exchange: Exchange, request_id: bytes) -> ProxyResponse:
        """Buffer a small body (the common case), stream a big or open-ended one."""
        headers = _forwarded_headers(exchange.headers, _NOT_RETURNED)
        headers.append((b"x-request-id", request_id))
        length = next((v for n, v in exchange.headers if n.lower() == b"content-length"), None)
        if method == "HEAD" or exchange.status in (204, 304):
            exchange.release()
            if length is not None:
                headers.append((b"content-length", length))
            return ProxyResponse(exchange.status, headers)
        if length is not None and length.isdigit() and int(length) <= _STREAM_ABOVE_BYTES:
            body = await exchange.read()
            headers.append((b"content-length", b"%d" % len(body)))
            return ProxyResponse(exchange.status, headers, body)
        if length is not None:
            headers.append((b"content-length", length))
        return ProxyResponse(exchange.status, headers, stream=exchange)

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


class Closed(msgspec.Struct, frozen=True):
    """How a proxied WebSocket ended: which side closed first, with what code and reason."""

    by: Literal["client", "processor"]
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
    """The processor's close frame; else the one the proxy sent it (1009 too big, 1011 no pong)."""
    frame = exc.rcvd or exc.sent
    if frame is None:
        return Closed("processor", 1006, "")
    return Closed("processor", frame.code, frame.reason)


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
