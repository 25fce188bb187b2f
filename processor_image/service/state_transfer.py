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
"""

from __future__ import annotations

from collections.abc import AsyncIterator

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
)

ZSTD = "zstd"
_LEVEL = 1
"""Fastest level: on state JSON it compresses about as well as the default (3) at 1.5-5x the speed."""
_CHUNK = 1 << 20


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
