"""``GET``/``PUT /state`` bodies: JSON, zstd-compressed when asked, bounded by ``MAX_STATE_BYTES``.

Hibernation moves whole processor states (tens or hundreds of MB of highly repetitive JSON)
through the manager, which stores them as they come. So:

* ``GET /state`` answers ``Content-Encoding: zstd`` when ``Accept-Encoding`` names ``zstd``
  (plain JSON otherwise: content negotiation, other clients keep working);
* ``PUT /state`` takes ``Content-Encoding: zstd`` or plain JSON, up to ``MAX_STATE_BYTES`` as
  sent *and* once decompressed, independent of ``MAX_BODY_BYTES`` (the cap on client requests;
  a client going through the manager's proxy is still held to ``MAX_PROXY_BODY_BYTES``, and a
  small compressed body cannot expand past ``MAX_STATE_BYTES`` here).

Encoding, compressing, decompressing and decoding are plain functions meant for a worker thread
(``asyncio.to_thread``), so the event loop keeps answering ``/health`` while megabytes move.
Taking, decoding and loading a snapshot builds millions of small objects: ``without_gc`` runs
them with the cyclic garbage collector paused, which otherwise rescans the growing heap again
and again (on a 118 MB state: a snapshot in 9 s instead of ~100 s).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator, Callable
from typing import ParamSpec, TypeVar

import msgspec
import zstandard

from processor_image.engine import ProcessorState
from processor_image.service.errors import StateNotReadable, StateTooLarge, UnsupportedEncoding

__all__ = (
    "ZSTD",
    "decode_state",
    "encode_state",
    "read_limited",
    "wants_zstd",
    "without_gc",
)

ZSTD = "zstd"
_LEVEL = 1
"""Fastest level: on state JSON about as small as the default (3), at 1.5-5x the speed."""
_CHUNK = 1 << 20

_P = ParamSpec("_P")
_T = TypeVar("_T")
_gc_pauses = 0
_gc_lock = threading.Lock()


def without_gc(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``call(*args, **kwargs)`` with the cyclic GC paused (re-enabled when the last pause ends).

    Reference counting still frees everything that is not in a cycle; the collector runs again
    as soon as no pause is left.
    """
    global _gc_pauses
    with _gc_lock:
        pausing = _gc_pauses > 0 or gc.isenabled()  # else: disabled by someone else, left so
        if pausing:
            _gc_pauses += 1
            gc.disable()
    try:
        return call(*args, **kwargs)
    finally:
        if pausing:
            with _gc_lock:
                _gc_pauses -= 1
                if _gc_pauses == 0:
                    gc.enable()


def wants_zstd(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts ``zstd`` (a ``q=0`` entry refuses it)."""
    for entry in (accept_encoding or "").split(","):
        coding, _, params = entry.partition(";")
        if coding.strip().lower() != ZSTD:
            continue
        quality = params.strip().lower().removeprefix("q=")
        try:
            return not params.strip() or float(quality) > 0
        except ValueError:
            return False
    return False


def encode_state(state: ProcessorState, *, compress: bool) -> bytes:
    """The snapshot as JSON, zstd-compressed (one frame, content size recorded) if asked."""
    body = msgspec.json.encode(state)
    if not compress:
        return body
    return zstandard.ZstdCompressor(level=_LEVEL).compress(body)


async def read_limited(
    chunks: AsyncIterator[bytes], limit: int, announced: int | None = None
) -> bytes:
    """The request body, refused with 413 as soon as it is over ``limit`` bytes."""
    if announced is not None and announced > limit:
        raise StateTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise StateTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


def decode_state(body: bytes, content_encoding: str | None, limit: int) -> ProcessorState:
    """The snapshot a ``PUT /state`` body holds; 413, 415 or 422 when it cannot be one."""
    coding = (content_encoding or "identity").strip().lower()
    if coding == ZSTD:
        json_body: bytes | bytearray = _decompress(body, limit)
    elif coding == "identity":
        json_body = body
    else:
        raise UnsupportedEncoding(coding)
    try:
        return msgspec.json.decode(json_body, type=ProcessorState)
    except msgspec.ValidationError as exc:
        raise StateNotReadable("VALIDATION_ERROR", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise StateNotReadable("INVALID_JSON", str(exc)) from exc


def _decompress(body: bytes, limit: int) -> bytearray:
    """Decompress in chunks, stopping once past ``limit``: a small bomb stays small."""
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
        with reader:
            while chunk := reader.read(_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise StateTooLarge(limit)
    except zstandard.ZstdError as exc:
        raise StateNotReadable("INVALID_JSON", f"not a zstd stream: {exc}") from exc
    return out
