"""The WebSocket bridge: open the processor's ``/ws``, copy frames both ways, map close codes.

One pump per direction copies text and binary frames as they are; whichever side closes first,
its close code and reason are passed to the other side. Failures to open the processor's socket
become ``ProcessorUnavailable`` (502) or ``ProcessorTimeout`` (504), as for HTTP.

Hibernation: the manager fences the session's processor before reading its state, and the
fence closes every open ``/ws`` with 1012 once the frame it is handling has been answered. The
bridge passes 1012 on with ``HIBERNATING_REASON``: reconnect, the next connection waits for the
restore. A frame the client sent that got no reply before the close was not applied (the
fence refuses it), so a client treats an unanswered frame as not applied and sends it again on
the new connection. This works whichever replica decided the hibernation: the processor ends
the bridges, not the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar.exceptions import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from session_manager.errors import (
    CapacityExceeded,
    ProcessorTimeout,
    ProcessorUnavailable,
    RouteStale,
    StoreUnavailable,
)
from session_manager.processor_secrets import ProcessorSecrets
from session_manager.proxy.http1 import SOCKET_GONE, Key, parse_endpoint
from session_manager.proxy.journaling import JOURNAL_HEADER, SocketJournal

if TYPE_CHECKING:
    from litestar.connection import WebSocket

__all__ = (
    "HIBERNATING_REASON",
    "Closed",
    "WebSocketConnector",
    "bridge_websockets",
    "websocket_close_code",
)

_CLOSE_REASON_BYTES = 123

_MAX_UNANSWERED = 16
"""Client frames the processor has not answered yet, per socket. At the limit the bridge reads
no more from the client (it waits, backpressure): a client that sends and never reads cannot
queue work on the processor, and replies in the manager, without end. The processor answers
every frame with exactly one message (spec §7.3)."""

_SERVICE_RESTART = 1012
HIBERNATING_REASON = "session hibernating: reconnect, the next connection waits for the restore"
"""The reason the client gets with 1012 when the session's processor was fenced."""


class WebSocketConnector:
    """Opens WebSockets to processors with the proxy's connect timeout and message cap.

    It also counts each session's open sockets (``admit``/``leave``): beyond
    ``max_per_session`` (``PROXY_MAX_WEBSOCKETS_PER_SESSION``) a new one is refused, so one
    session's clients cannot hold an unbounded number of bridges, processor sockets and
    buffered frames.
    """

    def __init__(
        self,
        *,
        open_timeout_s: float,
        max_message_bytes: int,
        secrets: ProcessorSecrets | None = None,
        max_per_session: int = 16,
        unix_socket: Callable[[Key], str | None] | None = None,
    ) -> None:
        self.open_timeout_s = open_timeout_s
        self._unix_socket = unix_socket
        self.max_message_bytes = max_message_bytes
        self._secrets = secrets
        self.max_per_session = max_per_session
        self._open: dict[str, int] = {}

    def admit(self, session_id: str) -> None:
        """Count one more open socket for the session; ``429`` when it has its maximum.

        Each ``admit`` that returns must be matched by one ``leave``.
        """
        held = self._open.get(session_id, 0)
        if held >= self.max_per_session:
            raise CapacityExceeded(
                "too many open WebSockets for this session",
                retry_after_s=1,
                limit="PROXY_MAX_WEBSOCKETS_PER_SESSION",
            )
        self._open[session_id] = held + 1

    def is_open(self, session_id: str) -> bool:
        """Whether the session has a socket admitted and not yet left."""
        return session_id in self._open

    def leave(self, session_id: str) -> None:
        """One of the session's sockets is closed."""
        left = self._open[session_id] - 1
        if left:
            self._open[session_id] = left
        else:
            del self._open[session_id]

    async def connect(
        self,
        endpoint: str,
        query: str,
        subprotocols: Sequence[str],
        request_id: str,
        *,
        journaled: bool = False,
        processor_id: str | None = None,
        epoch: int = 0,
    ) -> ClientConnection:
        """An open WebSocket to the processor's ``/ws``; failures map like HTTP ones.

        ``journaled`` asks the processor for the sequence numbers ``SocketJournal`` needs;
        ``processor_id`` (``None`` for a static processor) adds that processor's secret at
        the route's ``epoch``.
        The caller closes it (``bridge_websockets`` does, whichever side ends first).
        """
        scheme = "wss" if endpoint.startswith("https:") else "ws"
        url = f"{scheme}:{endpoint.split(':', 1)[1]}/ws" + (f"?{query}" if query else "")
        headers = {"X-Request-ID": request_id}
        if journaled:
            headers[JOURNAL_HEADER] = "1"
        if processor_id is not None and self._secrets is not None:
            headers |= self._secrets.headers(processor_id, epoch)
        options: dict[str, Any] = {
            "additional_headers": headers,
            "subprotocols": [Subprotocol(p) for p in subprotocols] or None,
            "compression": None,
            "proxy": None,
            "user_agent_header": None,
            "open_timeout": self.open_timeout_s,
            "max_size": self.max_message_bytes,
        }
        try:
            path = self._socket_of(endpoint)
            if path is not None:
                with contextlib.suppress(*SOCKET_GONE):
                    return await connect(url, unix=True, path=path, **options)
            return await connect(url, **options)
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

    def _socket_of(self, endpoint: str) -> str | None:
        if self._unix_socket is None:
            return None
        try:
            key = parse_endpoint(endpoint).key
        except ProcessorUnavailable:  # not an http(s) URL: the connect says so
            return None
        return self._unix_socket(key)


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


class _Unanswered:
    """Frames sent on to the processor and not answered yet, at most ``_MAX_UNANSWERED``."""

    __slots__ = ("_owed", "_room")

    def __init__(self) -> None:
        self._room = asyncio.Semaphore(_MAX_UNANSWERED)
        self._owed = 0

    async def wait_for_room(self) -> None:
        """Wait until the processor has answered enough frames to take another."""
        await self._room.acquire()
        self._owed += 1

    def answered(self) -> None:
        """A reply reached the client (an unasked one frees nothing)."""
        if self._owed:
            self._owed -= 1
            self._room.release()


async def _client_to_processor(
    socket: WebSocket[Any, Any, Any],
    upstream: ClientConnection,
    on_frame: Callable[[], None],
    journal: SocketJournal | None,
    unanswered: _Unanswered,
) -> Closed:
    while True:
        await unanswered.wait_for_room()
        message: dict[str, Any] = dict(await socket.receive())
        if message["type"] == "websocket.disconnect":
            return Closed("client", message.get("code", 1005), message.get("reason") or "")
        on_frame()
        text: str | None = message.get("text")
        data: str | bytes | None = text if text is not None else message.get("bytes")
        if data is None:
            unanswered.answered()
            continue
        if journal is not None:
            journal.sent(data)
        try:
            await upstream.send(data)
        except ConnectionClosed as exc:
            return _processor_closed(exc)


async def _processor_to_client(
    socket: WebSocket[Any, Any, Any],
    upstream: ClientConnection,
    journal: SocketJournal | None,
    unanswered: _Unanswered,
) -> Closed:
    while True:
        try:
            data = await upstream.recv()
        except ConnectionClosed as exc:
            return _processor_closed(exc)
        if journal is not None:
            try:
                data = await journal.reply(data)
            except RouteStale:  # a processor the session replaced: reconnect to the new one
                return Closed("processor", _SERVICE_RESTART, RouteStale.code)
            except StoreUnavailable:  # not journaled, so not acknowledged: the client must know
                return Closed("processor", 1013, StoreUnavailable.code)
        try:
            if isinstance(data, str):
                await socket.send({"type": "websocket.send", "text": data, "bytes": None})
            else:
                await socket.send({"type": "websocket.send", "text": None, "bytes": data})
        except (WebSocketDisconnect, OSError):  # OSError: uvicorn's ClientDisconnected
            return Closed("client", 1001, "")
        unanswered.answered()


def _processor_closed(exc: ConnectionClosed) -> Closed:
    """The processor's close frame; else the one the proxy sent it (1009 too big, 1011 no pong)."""
    frame = exc.rcvd or exc.sent
    if frame is None:
        return Closed("processor", 1006, "")
    return Closed("processor", frame.code, frame.reason)


async def bridge_websockets(
    socket: WebSocket[Any, Any, Any],
    upstream: ClientConnection,
    on_frame: Callable[[], None],
    journal: SocketJournal | None = None,
) -> Closed:
    """Copy frames both ways until one side closes, then close the other with the same code.

    ``socket`` must be accepted. ``on_frame`` runs for every client frame (idle deadline).
    At most ``_MAX_UNANSWERED`` client frames are with the processor at once; a client that
    does not read its replies stops being read from (and is cut off after
    ``CLIENT_WRITE_TIMEOUT_S`` by the edge).
    With ``journal`` (an upstream opened ``journaled``), every reply that changed the
    processor's state is journaled before the client gets it; if it cannot be, the client's
    socket is closed with 1013 ``STORE_UNAVAILABLE`` instead.
    """
    unanswered = _Unanswered()
    pumps = {
        asyncio.create_task(_client_to_processor(socket, upstream, on_frame, journal, unanswered)),
        asyncio.create_task(_processor_to_client(socket, upstream, journal, unanswered)),
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
        reason = HIBERNATING_REASON if closed.code == _SERVICE_RESTART else closed.reason
        with contextlib.suppress(WebSocketDisconnect, OSError):
            await socket.close(*websocket_close_code(closed.code, reason))
    return closed
