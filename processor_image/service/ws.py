"""``WS /ws``: the spec's message types (§7.3), each answered once, under the same lock as HTTP."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from processor_image.engine import EngineError
from processor_image.service.runtime import Runtime, generated_unique_id

__all__ = ("ws",)

log = logging.getLogger(__name__)


class _MissingKey(Exception):
    """A required payload key is absent; reported as its repr, like the reference's KeyError."""

    def __init__(self, key: str) -> None:
        super().__init__(repr(key))


def _require(payload: dict[str, Any], key: str) -> Any:
    if key not in payload:
        raise _MissingKey(key)
    return payload[key]


def _handle(runtime: Runtime, kind: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """One message's reply; engine errors and missing keys become ``error`` replies."""
    p, pid = runtime.processor, runtime.processor_id
    try:
        if kind == "observe":
            strings = _require(payload, "strings")
            vectors = _require(payload, "vectors")
            emotives = _require(payload, "emotives")
            unique_id = (
                payload["unique_id"] if "unique_id" in payload else generated_unique_id("ws")
            )
            _check_observation(
                strings, vectors, emotives, unique_id, payload.get("path"), payload.get("metadata")
            )
            result = p.observe(
                strings, vectors, emotives, unique_id, payload.get("path"), payload.get("metadata")
            )
            data = msgspec.to_builtins(runtime.observe_response(result))
            return {"type": "observation_result", "data": data}
        if kind == "get_stm":
            return {"type": "stm", "data": {"stm": p.stm, "processor_id": pid}}
        if kind == "get_predictions":
            unique_id = _require(payload, "unique_id") if payload else None
            return {
                "type": "predictions",
                "data": {"predictions": p.predictions(unique_id or None), "processor_id": pid},
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
        if kind == "ping":
            return {"type": "pong", "data": {"processor_id": pid, "timestamp": time.time()}}
        return {"type": "error", "data": {"message": f"Unknown message type: {kind}"}}
    except EngineError as exc:
        return {"type": "error", "data": {"message": exc.message}}
    except (_MissingKey, _BadObservation) as exc:
        return {"type": "error", "data": {"message": str(exc)}}


class _BadObservation(Exception):
    """Wrong types in a WS observation: answered as an error message, never a crash."""


def _check_observation(
    strings: Any, vectors: Any, emotives: Any, unique_id: Any, path: Any, metadata: Any
) -> None:
    number = (int, float)
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise _BadObservation("strings must be a list of strings")
    if not isinstance(vectors, list) or not all(
        isinstance(v, list) and all(isinstance(x, number) and not isinstance(x, bool) for x in v)
        for v in vectors
    ):
        raise _BadObservation("vectors must be a list of lists of numbers")
    if not isinstance(emotives, dict) or not all(
        isinstance(k, str) and isinstance(v, number) and not isinstance(v, bool)
        for k, v in emotives.items()
    ):
        raise _BadObservation("emotives must be an object of numbers")
    if not isinstance(unique_id, str):
        raise _BadObservation("unique_id must be a string")
    if path is not None and (
        not isinstance(path, list) or not all(isinstance(p, str) for p in path)
    ):
        raise _BadObservation("path must be a list of strings")
    if metadata is not None and not isinstance(metadata, dict):
        raise _BadObservation("metadata must be an object")


def _status(message: str, pid: str) -> dict[str, Any]:
    return {"type": "status", "data": {"status": "okay", "message": message, "processor_id": pid}}


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    """Loop until the client leaves; a frame that is not a JSON object closes with 1011."""
    runtime: Runtime = socket.app.state.runtime
    await socket.accept()
    try:
        while True:
            raw = await socket.receive_data(mode="text")
            try:
                message = msgspec.json.decode(raw)
                if not isinstance(message, dict):
                    raise ValueError("message must be a JSON object")
                payload = message.get("payload") or {}
                if not isinstance(payload, dict):
                    raise ValueError("payload must be a JSON object")
            except (msgspec.DecodeError, ValueError) as exc:
                await socket.close(code=1011, reason=str(exc)[:120])
                return
            async with runtime.lock:
                reply = _handle(runtime, message.get("type"), payload)
            await socket.send_data(msgspec.json.encode(reply).decode(), mode="text")
    except WebSocketDisconnect:
        return
