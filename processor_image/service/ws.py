"""``WS /ws``: the spec's message types (§7.3), each answered once, under the same lock as HTTP.

Every frame gets exactly one reply, in order. A frame the service cannot use (not JSON, not
an object, no string ``type``, a payload of the wrong shape) is answered with an ``error``
message saying what to send instead, and the socket stays open (this project's rule; the
reference closed it with 1011).

Journaling (the session manager's crash recovery): a handshake carrying ``X-Kato-Journal: 1``
gets ``"seq": n`` inside ``data`` of every reply to a message that changed state (the manager
strips it). ``POST /message`` answers one message over HTTP exactly as ``/ws`` would, with the
reply's ``seq`` in ``X-Kato-Seq``; the manager replays journaled WebSocket messages through it
(``X-Kato-Replay-Seq`` as for any replayed request).
"""

from __future__ import annotations

import time
from typing import Any, cast

import msgspec
from litestar import Request, Response, WebSocket, post, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.types import WebSocketDisconnectEvent, WebSocketReceiveEvent

from processor_image.errors import ProcessorError
from processor_image.service.errors import ProcessorFenced
from processor_image.service.fence import FENCE_CLOSE
from processor_image.service.memory import exit_out_of_memory
from processor_image.service.runtime import (
    REPLAY_SEQ_HEADER,
    SEQ_HEADER,
    Runtime,
    generated_unique_id,
)

__all__ = ("JOURNAL_HEADER", "message", "ws")

JOURNAL_HEADER = "X-Kato-Journal"
"""On the ``/ws`` handshake: put each state-changing reply's sequence number in ``data.seq``."""


_TYPES = (
    "observe",
    "get_stm",
    "get_predictions",
    "learn",
    "clear_stm",
    "clear_all",
    "update_genes",
    "ping",
)
_MUTATING = frozenset({"observe", "learn", "clear_stm", "clear_all", "update_genes"})
_EXAMPLE = '{"type": "ping", "payload": {}}'
_UNIQUE_ID = "a string; send {} for the latest predictions"
_GENES = 'an object of gene names to values, e.g. {"recall_threshold": 0.3}'


class _BadMessage(Exception):
    """A frame or payload the service cannot use; its text goes back as an ``error`` message."""


def _require(payload: dict[str, Any], kind: str, key: str, what: str) -> Any:
    if key not in payload:
        raise _BadMessage(f"{kind} needs payload.{key}: {what}")
    return payload[key]


def _parse(frame: str | bytes) -> tuple[str, dict[str, Any]]:
    """The message's type and payload, or _BadMessage saying what a frame must look like."""
    try:
        message = msgspec.json.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _BadMessage(
            f"Frame is not valid JSON ({exc}): send an object like {_EXAMPLE}"
        ) from None
    if not isinstance(message, dict):
        raise _BadMessage(f"Frame must be a JSON object like {_EXAMPLE}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise _BadMessage(f'Message needs a string "type", one of: {", ".join(_TYPES)}')
    payload = message.get("payload") or {}
    if not isinstance(payload, dict):
        raise _BadMessage('"payload" must be a JSON object (or absent)')
    return kind, payload


def _handle(runtime: Runtime, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One message's reply; the package's errors and bad payloads become ``error`` replies."""
    p, pid = runtime.processor, runtime.processor_id
    try:
        if kind == "observe":
            return _observe(runtime, payload)
        if kind == "get_stm":
            return {"type": "stm", "data": {"stm": p.stm, "processor_id": pid}}
        if kind == "get_predictions":
            unique_id = _require(payload, kind, "unique_id", _UNIQUE_ID) if payload else None
            if unique_id is not None and not isinstance(unique_id, str):
                raise _BadMessage(f"get_predictions needs payload.unique_id: {_UNIQUE_ID}")
            return {
                "type": "predictions",
                "data": {
                    "predictions": msgspec.Raw(p.predictions_json(unique_id or None)),
                    "processor_id": pid,
                },
            }
        if kind == "learn":
            return {
                "type": "learn_result",
                "data": {"pattern_name": p.learn(), "processor_id": pid},
            }
        if kind == "clear_stm":
            p.clear_stm()
            return _status("stm-cleared", pid)
        if kind == "clear_all":
            p.clear_all()
            return _status("all-cleared", pid)
        if kind == "update_genes":
            genes = _require(payload, kind, "genes", _GENES)
            if not isinstance(genes, dict):
                raise _BadMessage(f"update_genes needs payload.genes: {_GENES}")
            p.update_genes(genes)
            return _status("genes-updated", pid)
        if kind == "ping":
            return {"type": "pong", "data": {"processor_id": pid, "timestamp": time.time()}}
        return _error(f"Unknown message type: {kind}")
    except ProcessorError as exc:
        return _error(exc.message)
    except _BadMessage as exc:
        return _error(str(exc))


def _observe(runtime: Runtime, payload: dict[str, Any]) -> dict[str, Any]:
    strings = _require(payload, "observe", "strings", "a list of strings ([] for none)")
    vectors = _require(payload, "observe", "vectors", "a list of lists of numbers ([] for none)")
    emotives = _require(payload, "observe", "emotives", "an object of numbers ({} for none)")
    unique_id = payload["unique_id"] if "unique_id" in payload else generated_unique_id("ws")
    path, metadata = payload.get("path"), payload.get("metadata")
    _check_observation(strings, vectors, emotives, unique_id, path, metadata)
    result = runtime.processor.observe(strings, vectors, emotives, unique_id, path, metadata)
    data = msgspec.to_builtins(runtime.observe_response(result))
    return {"type": "observation_result", "data": data}


def _check_observation(
    strings: Any, vectors: Any, emotives: Any, unique_id: Any, path: Any, metadata: Any
) -> None:
    number = (int, float)
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise _BadMessage("strings must be a list of strings")
    if not isinstance(vectors, list) or not all(
        isinstance(v, list) and all(isinstance(x, number) and not isinstance(x, bool) for x in v)
        for v in vectors
    ):
        raise _BadMessage("vectors must be a list of lists of numbers")
    if not isinstance(emotives, dict) or not all(
        isinstance(k, str) and isinstance(v, number) and not isinstance(v, bool)
        for k, v in emotives.items()
    ):
        raise _BadMessage("emotives must be an object of numbers")
    if not isinstance(unique_id, str):
        raise _BadMessage("unique_id must be a string")
    if path is not None and (
        not isinstance(path, list) or not all(isinstance(p, str) for p in path)
    ):
        raise _BadMessage("path must be a list of strings")
    if metadata is not None and not isinstance(metadata, dict):
        raise _BadMessage("metadata must be an object")


def _status(message: str, pid: str) -> dict[str, Any]:
    return {"type": "status", "data": {"status": "okay", "message": message, "processor_id": pid}}


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "data": {"message": message}}


def _answer(
    runtime: Runtime, frame: str | bytes, replay_seq: str | None
) -> tuple[dict[str, Any], int | None]:
    """The reply to one frame and, when it changed state, its sequence number; lock held."""
    try:
        kind, payload = _parse(frame)
    except _BadMessage as exc:
        return _error(str(exc)), None
    if kind in _MUTATING:
        runtime.begin(replay_seq)
    time = runtime.processor.time
    reply = _handle(runtime, kind, payload)
    # An observe the engine refused still counted time (spec §2.2): numbered all the same.
    failed_but_counted = kind == "observe" and runtime.processor.time != time
    if kind in _MUTATING and (reply["type"] != "error" or failed_but_counted):
        return reply, runtime.applied(replay_seq)
    return reply, None


@post("/message", status_code=200, include_in_schema=False)
async def message(request: Request[Any, Any, Any]) -> Response[bytes]:
    """One WebSocket message over HTTP: the reply ``/ws`` would send (journal replay)."""
    runtime: Runtime = request.app.state.runtime
    frame = await request.body()
    async with runtime.lock:
        reply, seq = await runtime.run(
            _answer, runtime, frame, request.headers.get(REPLAY_SEQ_HEADER)
        )
    headers = {SEQ_HEADER: str(seq)} if seq is not None else None
    return Response(msgspec.json.encode(reply), media_type="application/json", headers=headers)


async def _receive(socket: WebSocket[Any, Any, Any]) -> str | bytes:
    """The next frame, text or binary as sent."""
    event = cast("WebSocketReceiveEvent | WebSocketDisconnectEvent", await socket.receive())
    if event["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(detail="disconnect event", code=event["code"])
    text = event.get("text")
    return text if text is not None else event.get("bytes") or b""


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    """Answer every frame until the client leaves; 1011 before accepting when no processor.

    Once the hibernation fence is up (``service.fence``) the socket is closed with 1012 after
    the frame in hand is answered; a frame that arrives later is neither processed nor answered.
    On a socket the manager journals (``X-Kato-Journal: 1``), mutating replies carry ``seq``.
    """
    runtime: Runtime | None = getattr(socket.app.state, "runtime", None)
    if runtime is None:
        await socket.close(code=1011, reason="Processor not initialized")
        return
    journaled = socket.headers.get(JOURNAL_HEADER) == "1"
    await socket.accept()
    with runtime.sockets.open(socket) as link:
        if runtime.lock.fenced:
            await link.close(*FENCE_CLOSE)
            return
        try:
            while True:
                frame = await _receive(socket)
                async with link.busy:
                    if link.closed:
                        return
                    try:
                        async with runtime.lock:
                            reply, seq = await runtime.run(_answer, runtime, frame, None)
                    except ProcessorFenced:
                        await link.close(*FENCE_CLOSE)
                        return
                    if journaled and seq is not None:
                        reply["data"]["seq"] = seq
                    await socket.send_data(msgspec.json.encode(reply).decode(), mode="text")
        except WebSocketDisconnect:
            return
        except MemoryError:
            exit_out_of_memory()
