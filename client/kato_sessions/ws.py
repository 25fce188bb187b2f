"""``SessionSocket``: a session's WebSocket, one reply per message, in order.

The protocol (the processor's ``/ws``): send ``{"type": …, "payload": {…}}``, get exactly one
``{"type": …, "data": {…}}`` back per message, in the order sent. Types: ``observe``
(payload ``strings``, ``vectors``, ``emotives``, optional ``unique_id``) →
``observation_result``; ``get_stm`` → ``stm``; ``get_predictions`` (optional ``unique_id``) →
``predictions``; ``learn`` → ``learn_result``; ``clear_stm``, ``clear_all``, ``update_genes``
(``genes``) → ``status``; ``ping`` → ``pong``. A message the processor cannot use is answered
with ``{"type": "error", "data": {"message": …}}`` and the socket stays open.

The manager closes a socket it refuses with ``4000 + HTTP status`` and the error code as
reason: raised as the matching ``KatoError``. A session that hibernates closes its sockets
with ``1012``: this helper reconnects (the new connection waits for the restore) and resends
the messages not answered yet, which the processor never applied. A ``4429``/``4503`` close
(too many sockets, not ready) is retried the same way after a pause, within the client's
``Retry`` budget.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, Self
from urllib.parse import quote

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from kato_sessions._calls import Retry, bearer
from kato_sessions.errors import (
    ConnectionFailed,
    SocketClosed,
    WebSocketMessageError,
    error_for_close,
)
from kato_sessions.models import ObserveResult, Predictions, Stm, WsMessage

__all__ = ("SessionSocket",)

_RECONNECT_AT_ONCE = 1012
"""The session hibernated (service restart): reconnect now, the restore is waited for."""
_RECONNECT_AFTER_PAUSE = frozenset({4429, 4503})
"""Too many sockets open, session not ready: worth another try after a pause."""
_PAUSE_S = 1.0
_NORMAL = frozenset({1000, 1001})

Message = Mapping[str, Any]


class SessionSocket:
    """An open WebSocket to one session (``async with session.websocket() as ws``).

    ``request`` sends one message and returns its reply; the typed helpers (``observe``,
    ``stm``, ``predictions`` …) do that and raise ``WebSocketMessageError`` on an ``error``
    reply. ``stream``/``observe_stream`` pipeline many messages (at most ``window`` unanswered)
    and yield the replies as an async iterator, in order.
    """

    def __init__(self, base_url: str, session_id: str, token: str | None, retry: Retry) -> None:
        base = "ws" + base_url.removeprefix("http")
        self.url = f"{base}/session/{quote(session_id, safe='')}/ws"
        self._token = token
        self._retry = retry
        self._connection: ClientConnection | None = None
        self._unanswered: collections.deque[bytes] = collections.deque()
        self._waited = 0.0

    async def __aenter__(self) -> Self:
        await self._connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket (normal closure)."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _connect(self) -> None:
        try:
            self._connection = await connect(self.url, additional_headers=bearer(self._token))
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise ConnectionFailed(0, "CONNECTION_FAILED", f"{self.url}: {exc!r}") from exc

    # -- raw messages ------------------------------------------------------------------------------

    async def send(self, kind: str, payload: Message | None = None) -> None:
        """Send one message; its reply comes from ``receive`` (in order)."""
        frame = msgspec.json.encode({"type": kind, "payload": dict(payload or {})})
        self._unanswered.append(frame)
        await self._send_frame(frame)

    async def _send_frame(self, frame: bytes) -> None:
        if self._connection is None:
            raise RuntimeError("the socket is not open: use `async with session.websocket()`")
        # A closed socket's reason is read (and acted on) by the next receive.
        with contextlib.suppress(ConnectionClosed):
            await self._connection.send(frame.decode())

    async def receive(self) -> WsMessage:
        """The next reply; a refused or failed socket raises the matching ``KatoError``."""
        while True:
            if self._connection is None:
                raise RuntimeError("the socket is not open: use `async with session.websocket()`")
            try:
                frame = await self._connection.recv()
            except ConnectionClosed as exc:
                await self._reconnect_or_raise(exc)
                continue
            if self._unanswered:
                self._unanswered.popleft()
            return msgspec.json.decode(frame, type=WsMessage)

    async def _reconnect_or_raise(self, closed: ConnectionClosed) -> None:
        """Reconnect after a close worth retrying and resend what was not answered, or raise."""
        code = closed.rcvd.code if closed.rcvd is not None else 1006
        reason = closed.rcvd.reason if closed.rcvd is not None else ""
        pause = 0.0 if code == _RECONNECT_AT_ONCE else _PAUSE_S
        retryable = code == _RECONNECT_AT_ONCE or code in _RECONNECT_AFTER_PAUSE
        if not retryable or self._waited + pause > self._retry.timeout_s:
            self._connection = None
            raise error_for_close(code, reason) from closed
        await asyncio.sleep(pause)
        self._waited += pause
        await self._connect()
        for frame in list(self._unanswered):
            await self._send_frame(frame)

    def __aiter__(self) -> AsyncIterator[WsMessage]:
        return self._replies()

    async def _replies(self) -> AsyncIterator[WsMessage]:
        """Every reply until the socket is closed normally."""
        while True:
            try:
                reply = await self.receive()
            except SocketClosed as exc:
                if exc.details["close_code"] in _NORMAL:
                    return
                raise
            yield reply

    async def request(self, kind: str, payload: Message | None = None) -> WsMessage:
        """Send one message and return its reply (an ``error`` reply is returned, not raised)."""
        await self.send(kind, payload)
        return await self.receive()

    async def stream(
        self,
        messages: Iterable[tuple[str, Message | None]] | AsyncIterable[tuple[str, Message | None]],
        *,
        window: int = 32,
    ) -> AsyncIterator[WsMessage]:
        """Send ``(type, payload)`` messages pipelined, yield each reply in order."""
        in_flight = 0
        if isinstance(messages, AsyncIterable):
            async for kind, payload in messages:
                if in_flight >= window:
                    yield await self.receive()
                    in_flight -= 1
                await self.send(kind, payload)
                in_flight += 1
        else:
            for kind, payload in messages:
                if in_flight >= window:
                    yield await self.receive()
                    in_flight -= 1
                await self.send(kind, payload)
                in_flight += 1
        for _ in range(in_flight):
            yield await self.receive()

    # -- typed helpers -----------------------------------------------------------------------------

    async def _checked(self, kind: str, payload: Message | None = None) -> dict[str, Any]:
        reply = await self.request(kind, payload)
        return _data(reply)

    async def observe(
        self,
        strings: Iterable[str] = (),
        vectors: Iterable[Iterable[float]] = (),
        emotives: Mapping[str, float] | None = None,
        unique_id: str | None = None,
    ) -> ObserveResult:
        """One observation."""
        data = await self._checked(
            "observe", _observe_payload(strings, vectors, emotives, unique_id)
        )
        return msgspec.convert(data, ObserveResult)

    async def observe_stream(
        self,
        observations: Iterable[Iterable[str] | Message] | AsyncIterable[Iterable[str] | Message],
        *,
        window: int = 32,
    ) -> AsyncIterator[ObserveResult]:
        """Observe each item, pipelined; yield each result in order.

        An item is a list of strings or an observation's fields (``strings``, ``vectors``,
        ``emotives``, ``unique_id``). An ``error`` reply raises ``WebSocketMessageError``.
        """

        async def messages() -> AsyncIterator[tuple[str, Message | None]]:
            if isinstance(observations, AsyncIterable):
                async for item in observations:
                    yield "observe", _as_observation(item)
            else:
                for item in observations:
                    yield "observe", _as_observation(item)

        async for reply in self.stream(messages(), window=window):
            yield msgspec.convert(_data(reply), ObserveResult)

    async def stm(self) -> Stm:
        """The short-term memory."""
        return msgspec.convert(await self._checked("get_stm"), Stm)

    async def predictions(self, unique_id: str | None = None) -> Predictions:
        """The latest predictions, or those stored for ``unique_id``."""
        payload = {"unique_id": unique_id} if unique_id else None
        return msgspec.convert(await self._checked("get_predictions", payload), Predictions)

    async def learn(self) -> str:
        """Learn the short-term memory; the pattern's name (``""``: nothing to learn)."""
        data = await self._checked("learn")
        return str(data["pattern_name"])

    async def clear_stm(self) -> None:
        """Clear the short-term memory."""
        await self._checked("clear_stm")

    async def clear_all(self) -> None:
        """Clear the short-term memory, time and the knowledge base."""
        await self._checked("clear_all")

    async def update_genes(self, genes: Mapping[str, Any]) -> None:
        """Apply every gene update or none."""
        await self._checked("update_genes", {"genes": dict(genes)})

    async def ping(self) -> float:
        """A round trip to the processor; its clock (``timestamp``) in epoch seconds."""
        return float((await self._checked("ping"))["timestamp"])


def _data(reply: WsMessage) -> dict[str, Any]:
    """The reply's data, or ``WebSocketMessageError`` for an ``error`` reply."""
    if reply.type == "error":
        message = str(reply.data.get("message", ""))
        raise WebSocketMessageError(200, "WEBSOCKET_MESSAGE_ERROR", message, dict(reply.data))
    return reply.data


def _observe_payload(
    strings: Iterable[str],
    vectors: Iterable[Iterable[float]],
    emotives: Mapping[str, float] | None,
    unique_id: str | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "strings": list(strings),
        "vectors": [list(v) for v in vectors],
        "emotives": dict(emotives or {}),
    }
    if unique_id is not None:
        payload["unique_id"] = unique_id
    return payload


def _as_observation(item: Iterable[str] | Message) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return _observe_payload(
            item.get("strings", ()),
            item.get("vectors", ()),
            item.get("emotives"),
            item.get("unique_id"),
        )
    return _observe_payload(item, (), None, None)
