"""HTTP forwarding to processors over one shared keep-alive pool, with hop-by-hop filtering.

The client's method, path, query, body and end-to-end headers go to the processor; the
processor's status, content type, body and end-to-end headers come back. Hop-by-hop headers
(RFC 9110 §7.6.1 and whatever ``Connection`` names) and the session token never cross.
Network errors become ``ProcessorUnavailable`` (502) or ``ProcessorTimeout`` (504) in the
pool (``proxy.http1``), never in handlers.

Client-sent ``X-Kato-*`` request headers are dropped too: that namespace is the manager's own,
for headers it adds itself, such as the processor's secret (``X-Kato-Processor-Secret``, added
for a session's processor: a client can never send one on). ``ProxyResponse.is_fenced`` tells
a processor's 503 ``PROCESSOR_FENCED`` (the session is hibernating) from its other answers, so
the handler can resend the request to the restored processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from session_manager.errors import (
    CapacityExceeded,
    KatoError,
    PayloadTooLarge,
    RequestTimeout,
    RouteStale,
)
from session_manager.processor_secrets import SECRET_HEADER, ProcessorSecrets
from session_manager.proxy.activity import ActivityTracker
from session_manager.proxy.http1 import (
    Connection,
    Endpoint,
    Exchange,
    Http1Pool,
    Key,
    RawHeaders,
    parse_endpoint,
)
from session_manager.proxy.journaling import (
    SEQ_HEADER,
    UNIQUE_ID_HEADER,
    WRITES,
    JournaledWrite,
    RequestJournal,
    journaled_body,
)
from session_manager.proxy.websocket import WebSocketConnector
from session_manager.proxy.wire import forwarded, header_lines

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

    from session_manager.metrics import Metrics
    from session_manager.settings import Settings

__all__ = ("READS", "Forwarder", "Outgoing", "ProxyResponse")

log = logging.getLogger(__name__)

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

READS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: never journaled, always safe to send again."""

_STREAM_ABOVE_BYTES = 256 * 1024
"""Responses bigger than this (or of unknown size) are streamed instead of buffered."""

_REMEMBERED_ENDPOINTS = 4096

_FENCED = "PROCESSOR_FENCED"
"""The processor's code for a request that came after the hibernation fence (not a client's)."""


def _numbering(headers: RawHeaders) -> tuple[bytes | None, bytes]:
    """The processor's ``X-Kato-Seq`` (``None``: not applied) and the unique id it took."""
    seq = None
    used_id = b""
    for name, value in headers:
        lowered = name.lower()
        if lowered == SEQ_HEADER:
            seq = value
        elif lowered == UNIQUE_ID_HEADER:
            used_id = value
    return seq, used_id


class Outgoing:
    """One request framed for a processor (``Forwarder.prepare``), until it is concluded."""

    __slots__ = ("applied", "data", "key", "method", "request_id", "started", "status", "write")

    def __init__(
        self, key: Key, data: bytes, method: str, request_id: bytes, write: JournaledWrite | None
    ) -> None:
        self.key = key
        self.data = data
        self.method = method
        self.request_id = request_id
        self.write = write
        self.started = time.perf_counter()
        self.status = "error"
        self.applied: int | None = None
        """The number a write was applied as, confirmed by ``conclude_now``, for ``settle_now``."""


class _ErrorCode(msgspec.Struct):
    code: str = ""


class _ErrorReply(msgspec.Struct):
    error: _ErrorCode = msgspec.field(default_factory=_ErrorCode)


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

    def is_fenced(self) -> bool:
        """Whether the processor refused because hibernation fenced it (503 ``PROCESSOR_FENCED``).

        The status is checked first: no other answer's body is ever parsed.
        """
        if self.status != 503 or self.stream is not None:
            return False
        try:
            return msgspec.json.decode(self.body, type=_ErrorReply).error.code == _FENCED
        except msgspec.DecodeError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response; a streamed body is copied chunk by chunk as it arrives.

        ``send`` waits while the client's socket is full. A client that is gone (it left, or
        the edge aborted it after ``CLIENT_WRITE_TIMEOUT_S`` of not reading) stops the copy:
        the processor connection is closed rather than read to its end.
        """
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        if self.stream is None:
            await send({"type": "http.response.body", "body": self.body, "more_body": False})
            return
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            async with contextlib.aclosing(self.stream.chunks()) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if gone.done() and gone.result():
                        log.info("client gone mid-response: processor connection closed")
                        return
        except KatoError:
            log.warning("processor response cut off", exc_info=True)
            raise
        finally:
            gone.cancel()
            self.stream.release()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _abandoned(journal: RequestJournal, write: JournaledWrite, exc: BaseException) -> None:
    """A write got no definite answer: void its entry ahead before the error goes on.

    Now, or in the background when the request was cancelled: a restart never replays it, and
    a resend applies it once. A void Redis refuses is raised (``StoreUnavailable``, 503): such
    a request is not resent.
    """
    if not isinstance(exc, Exception):
        journal.void_later(write)
        journal.end(write, None)
        return
    try:
        await journal.void(write)
    finally:
        journal.end(write, None)


async def _disconnected(receive: Receive) -> bool:
    """``True`` once the client's connection is gone (the request body was read before)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server that cannot tell: keep streaming
        log.debug("cannot watch for the client's disconnect", exc_info=True)
        return False
    return True


class Forwarder:
    """Sends requests to processors over one shared keep-alive pool; built once in the lifespan.

    It also carries the proxy's other two parts, so handlers find all three on
    ``app.state.forwarder``: ``websockets`` (opens processors' ``/ws``) and ``activity`` (the
    idle-deadline throttle).
    """

    def __init__(
        self,
        pool: Http1Pool,
        metrics: Metrics,
        *,
        connect_timeout_s: float,
        max_body_bytes: int,
        secrets: ProcessorSecrets | None = None,
        max_in_flight_per_session: int = 32,
        body_timeout_s: float = 60.0,
        max_websockets_per_session: int = 16,
        unix_socket: Callable[[Key], str | None] | None = None,
    ) -> None:
        self.body_timeout_s = body_timeout_s
        self._pool = pool
        self._secrets = secrets
        self._max_per_session = max_in_flight_per_session
        self._in_flight: dict[str, int] = {}
        self._requests = metrics.proxy_requests
        self._by_status: dict[str, Any] = {}
        """``proxy_requests`` per status label, looked up once (``labels`` costs ~10 µs)."""
        self._latency = metrics.proxy_latency
        self.max_body_bytes = max_body_bytes
        self.websockets = WebSocketConnector(
            open_timeout_s=connect_timeout_s,
            max_message_bytes=max_body_bytes,
            secrets=secrets,
            max_per_session=max_websockets_per_session,
            unix_socket=unix_socket,
        )
        self.activity = ActivityTracker()
        self.journal: RequestJournal | None = None
        """Set by the app when ``JOURNAL=on``: applied requests are journaled before replying."""
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
    def from_settings(
        cls,
        settings: Settings,
        metrics: Metrics,
        unix_socket: Callable[[Key], str | None] | None = None,
    ) -> Forwarder:
        """The forwarder for these settings.

        ``MAX_PROXY_BODY_BYTES`` bounds request bodies and WebSocket messages (responses are
        streamed); ``PROXY_MAX_CONNECTIONS`` caps requests in flight to processors, shared
        fairly, at most ``PROXY_MAX_IN_FLIGHT_PER_SESSION`` to one processor. ``unix_socket``:
        a processor's unix socket, if it has one (see ``Http1Pool``), for requests and
        WebSockets alike.
        """
        pool = Http1Pool(
            max_in_flight=settings.proxy_max_connections,
            max_idle=256,
            # Processors (uvicorn) drop idle connections after 5 s: expire ours first, so a
            # request never lands on a connection the processor is closing.
            keepalive_expiry_s=4.0,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            read_timeout_s=settings.proxy_read_timeout_s,
            max_in_flight_per_processor=settings.proxy_max_in_flight_per_session,
            unix_socket=unix_socket,
        )
        return cls(
            pool,
            metrics,
            connect_timeout_s=settings.proxy_connect_timeout_s,
            max_body_bytes=settings.max_proxy_body_bytes,
            secrets=ProcessorSecrets.from_key(settings.processor_secret_key),
            max_in_flight_per_session=settings.proxy_max_in_flight_per_session,
            body_timeout_s=settings.body_read_timeout_s,
            max_websockets_per_session=settings.proxy_max_websockets_per_session,
            unix_socket=unix_socket,
        )

    @contextlib.contextmanager
    def admitted(self, session_id: str) -> Iterator[None]:
        """Hold one of the session's in-flight slots (``PROXY_MAX_IN_FLIGHT_PER_SESSION``).

        Beyond the cap, ``429`` with ``Retry-After``: one session's clients (say, ones that
        never read their replies) cannot take every pooled connection from the others.
        """
        if not self.admit(session_id):
            raise CapacityExceeded(
                "too many requests in flight for this session",
                retry_after_s=1,
                limit="PROXY_MAX_IN_FLIGHT_PER_SESSION",
            )
        try:
            yield
        finally:
            self.leave(session_id)

    def admit(self, session_id: str) -> bool:
        """Take one of the session's in-flight slots if one is free (``leave`` gives it back)."""
        held = self._in_flight.get(session_id, 0)
        if held >= self._max_per_session:
            return False
        self._in_flight[session_id] = held + 1
        return True

    def leave(self, session_id: str) -> None:
        """Give back a slot ``admit`` took."""
        left = self._in_flight[session_id] - 1
        if left:
            self._in_flight[session_id] = left
        else:
            del self._in_flight[session_id]

    async def aclose(self) -> None:
        """Let pending deadline moves finish, then close the pooled connections."""
        await self.activity.drain()
        await self._pool.aclose()

    def prepare(
        self,
        method: str,
        endpoint: str,
        path: str,
        query: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
        *,
        session_id: str | None = None,
        processor_id: str | None = None,
        epoch: int = 0,
    ) -> Outgoing:
        """Frame one request for ``endpoint + path``, to send with ``forward`` (or ``send_on``).

        The lane's ``send_on`` must be followed by ``conclude`` (or ``conclude_now``).

        Args:
            method: HTTP method, passed through.
            endpoint: the processor's base URL, e.g. ``http://127.0.0.1:41234``.
            path: the path on the processor, already percent-encoded, starting with ``/``.
            query: the raw query string (without ``?``).
            headers: the client's raw request headers; filtered here.
            body: the request body.
            request_id: sent as ``X-Request-ID`` and returned the same way.
            session_id: the session the request is for; with a ``journal``, a mutating request
                is noted in it here (``RequestJournal.begin``), and one the processor applied
                (``X-Kato-Seq``) is journaled before the reply is returned.
            processor_id: the processor's id, for its secret (``None``: a static processor).
            epoch: the session's epoch the route was read at: the secret's, and checked
                against the record's by the journal (``RouteStale`` when it moved on).

        Raises:
            ProcessorUnavailable: the endpoint is not an http(s) URL.
        """
        target = self._endpoint(endpoint)
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
        lines.append(header_lines(forwarded(headers, _NOT_FORWARDED, internal=True)))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
        if processor_id is not None and self._secrets is not None:
            secret = self._secrets.for_processor(processor_id, epoch)
            lines.append(b"%s: %s\r\n" % (SECRET_HEADER.encode(), secret.encode()))
        journal = self.journal
        write = None
        if journal is not None and session_id is not None and method not in READS:
            write = journal.begin(session_id, endpoint, epoch, method, path, query, body)
            if write.unique_id:
                lines.append(b"%s: %s\r\n" % (UNIQUE_ID_HEADER, write.unique_id.encode()))
        rid = request_id.encode()
        lines.append(b"x-request-id: %s\r\n\r\n" % rid)
        lines.append(body)
        return Outgoing(target.key, b"".join(lines), method, rid, write)

    def sent(self, out: Outgoing) -> None:
        """``out`` was just written to the processor (its entry ahead may go to Redis now)."""
        if out.write is not None and self.journal is not None:
            self.journal.sent(out.write)

    async def forward(self, out: Outgoing) -> ProxyResponse:
        """Send a prepared request and return the processor's response (``conclude``'s).

        Raises:
            ProcessorUnavailable: the processor could not be reached or dropped the connection.
            ProcessorTimeout: the processor did not answer within ``PROXY_READ_TIMEOUT_S``.
            RouteStale: the journal refused a write answered through a route of an older
                epoch than the session's (its processor was replaced): not acknowledged.
        """
        try:
            exchange = await self._pool.request(
                out.key,
                out.data,
                method=out.method,
                sent=None if out.write is None else functools.partial(self.sent, out),
            )
        except BaseException as exc:
            return await self.conclude(out, None, exc)
        return await self.conclude(out, exchange, None)

    async def conclude(
        self, out: Outgoing, exchange: Exchange | None, error: BaseException | None
    ) -> ProxyResponse:
        """The processor's answer to ``out`` (or ``error``, getting it), journaled and counted.

        A write without a definite answer has its entry ahead voided before the error goes on.
        """
        journal = self.journal
        write = out.write
        try:
            try:
                if error is not None:
                    raise error
                assert exchange is not None  # noqa: S101
                out.status = str(exchange.status)
                response = await self._response(out.method, exchange, out.request_id)
            except BaseException as exc:
                if write is not None:  # no definite answer: the entry ahead must go first
                    assert journal is not None  # noqa: S101
                    await _abandoned(journal, write, exc)
                raise
            if write is not None:
                assert journal is not None  # noqa: S101
                try:
                    await self._journal(journal, write, response)
                except RouteStale:  # a replaced processor answered: the caller resends
                    if response.stream is not None:
                        response.stream.release()
                    raise
        except KatoError as exc:
            out.status = str(exc.status)
            raise
        finally:
            self._count(out.status, out.started)
        return response

    def conclude_now(self, out: Outgoing, conn: Connection) -> ProxyResponse | None:
        """``conclude`` for a whole answer when nothing in it would wait, else ``None``.

        That is: a small answer all in, and for a write, its entry ahead confirmed by the
        answer and already acknowledged by Redis (``RequestJournal.confirmed_now``). With
        ``None`` nothing has changed: the caller goes on with ``conclude``. Otherwise the
        caller answers first and then calls ``settle_now`` (the client is not kept waiting
        for the pool and the metrics).
        """
        if not conn.whole or conn.status in (204, 304) or conn.body_size > _STREAM_ABOVE_BYTES:
            return None
        headers = forwarded(conn.headers, _NOT_RETURNED)
        if out.write is not None:
            assert self.journal is not None  # noqa: S101
            seq, used_id = _numbering(headers)
            out.applied = self.journal.confirmed_now(out.write, seq, bool(used_id))
            if out.applied is None:
                return None
        body = conn.whole_body() or b""  # taken: the socket may carry the next request
        headers.append((b"x-request-id", out.request_id))
        headers.append((b"content-length", b"%d" % len(body)))
        out.status = str(conn.status)
        return ProxyResponse(conn.status, headers, body)

    def settle_now(self, out: Outgoing, conn: Connection) -> None:
        """After ``conclude_now``'s answer: the write ended, the socket pooled, the request counted.

        Always called once ``conclude_now`` gave an answer, whether it was sent or not.
        """
        if out.write is not None and out.applied is not None:
            assert self.journal is not None  # noqa: S101
            self.journal.ended_now(out.write, out.applied)
        self._pool.release(conn)
        self._count(out.status, out.started)

    def idle_connection(self, endpoint: str) -> Connection | None:
        """A pooled socket to ``endpoint`` and an in-flight slot, if both are free now.

        For ``send_on`` (or ``give_back``); ``None`` when a request would have to wait.
        """
        try:
            key = self._endpoint(endpoint).key
        except KatoError:
            return None
        return self._pool.take_idle(key)

    def give_back(self, conn: Connection) -> None:
        """Return an ``idle_connection`` that was not used."""
        self._pool.release(conn)

    def send_on(self, conn: Connection, out: Outgoing, on_done: Callable[[], None]) -> None:
        """Write ``out`` on ``conn``; ``on_done`` once its answer is in (``Connection.send``)."""
        conn.send(out.data, on_done, self._pool.read_timeout_s)
        self.sent(out)

    def exchange(self, conn: Connection) -> Exchange:
        """The answer on ``conn`` (from ``send_on``) for ``conclude``."""
        return Exchange(conn, self._pool.read_timeout_s)

    def _count(self, status: str, started: float) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._requests.labels(status=status)
        counter.inc()
        self._latency.observe(time.perf_counter() - started)

    async def _journal(
        self, journal: RequestJournal, write: JournaledWrite, response: ProxyResponse
    ) -> None:
        """Journal (or void) a write by the processor's answer; the reply waits for Redis."""
        seq, used_id = _numbering(response.headers)
        honoured = bool(used_id)
        applied = None
        unnumbered = False
        try:
            if seq is None or not seq.isdigit():  # not applied: an entry ahead is voided
                await journal.void(write)
                unnumbered = True
                if (
                    200 <= response.status < 300
                    and write.method in ("POST", "PUT")
                    and write.path in WRITES
                ):
                    await journal.journal.mark_unnumbered(write.session_id)  # an older processor
                return
            applied = int(seq)
            if write.confirmed_by(applied, honoured):
                await journal.confirm(write)
                return
            if write.unique_id and honoured:  # the id it got is known: no reply to parse
                await journal.record(write, applied, write.body, used_id.decode("latin-1"))
                return
            if write.unique_id:
                journal.ids_ignored(write)
            if response.stream is not None:  # a big reply (a long sequence): the ids are in it
                response.body = await response.stream.read()
                response.stream = None
                if not any(n == b"content-length" for n, _ in response.headers):
                    response.headers.append((b"content-length", b"%d" % len(response.body)))
            await journal.record(
                write, applied, journaled_body(write.path, write.body, response.body)
            )
        except BaseException:
            applied, unnumbered = None, False
            raise
        finally:
            journal.end(write, applied, unnumbered=unnumbered)

    async def _response(self, method: str, exchange: Exchange, request_id: bytes) -> ProxyResponse:
        """Buffer a small body (the common case), stream a big or open-ended one."""
        headers = forwarded(exchange.headers, _NOT_RETURNED)
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

    async def read_body(
        self, chunks: AsyncIterator[bytes] | bytes, declared_length: str | None
    ) -> bytes:
        """The whole request body, refused with 413 once it is over ``MAX_PROXY_BODY_BYTES``.

        It must arrive within ``BODY_READ_TIMEOUT_S`` (408): partial bodies trickled in by
        the thousand would otherwise hold memory without end. A body already in (``bytes``)
        is only measured.
        """
        if isinstance(chunks, bytes):
            if len(chunks) > self.max_body_bytes:
                raise PayloadTooLarge("request body too large", limit_bytes=self.max_body_bytes)
            return chunks
        try:
            async with asyncio.timeout(self.body_timeout_s):
                return await self._read_body(chunks, declared_length)
        except TimeoutError:
            raise RequestTimeout(
                "request body not received in time", timeout_s=self.body_timeout_s
            ) from None

    async def _read_body(self, chunks: AsyncIterator[bytes], declared_length: str | None) -> bytes:
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
