"""The crash-recovery journal: each session's acknowledged mutating requests since its checkpoint.

The proxy appends an entry after the processor applied a request and before the client hears
back (``JournalEntry``: the processor's sequence number, method, path, query and the body with
the ``unique_id`` the processor assigned filled in). A checkpoint is a snapshot (the processor's
``GET /state``, which carries its ``seq``) saved with ``SessionStore.save_snapshot``; the
entries it holds are then trimmed. Recovery loads the snapshot and replays the entries with a
higher sequence number, in order.

Appends go through a ``JournalPipe`` (a lean connection of their own, ``attach_pipe``) when
the app attached one, else through the shared redis-py client: both run ``journal_append.lua``.

One checkpoint or hibernation snapshot at a time per session (``checkpoint_lock``): an older
snapshot saved after a newer one, with the journal already trimmed to the newer, would lose
the entries in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.journal_pipe import JournalPipe
from session_manager.store.keys import Keys
from session_manager.store.lease import LeaderLease
from session_manager.store.scripts import register_script

__all__ = ("STALE", "Journal", "JournalEntry")

STALE = -2
"""The journal scripts' answer to a request whose route's epoch is not the session's any more:
its processor was replaced since (restore, recovery), so nothing is written for it."""


_LOCK_POLL_S = 0.05
_UNNUMBERED = b"unnumbered"
"""A member scored -1: the session's processor applied a write without a sequence number (an
image older than the journal), so an empty journal does not mean "no writes"."""


class JournalEntry(msgspec.Struct, array_like=True, frozen=True):
    """One acknowledged mutating request, replayable as it was applied."""

    seq: int
    method: str
    path: str
    query: str
    body: bytes
    unique_id: str = ""
    """For an ``/observe`` journaled ahead of its answer: the id the manager offered the
    processor (``X-Kato-Unique-Id``), used when the body names none; replay offers it again."""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(JournalEntry).decode


class Journal:
    """Per-session journals (sorted sets scored by sequence number)."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._append = register_script(client, "journal_append.lua")
        self._ahead = register_script(client, "journal_ahead.lua")
        self._pipe: JournalPipe | None = None

    def attach_pipe(self, timeout_s: float) -> JournalPipe | None:
        """Send appends over a ``JournalPipe`` of their own; it, to close, or ``None`` (TLS)."""
        self._pipe = JournalPipe.for_client(
            self.redis,
            cast("str", self._append.script),
            timeout_s,
            ahead_script=cast("str", self._ahead.script),
        )
        return self._pipe

    def _keys(self, session_id: str) -> tuple[bytes, bytes]:
        return self.keys.session(session_id).encode(), self.keys.journal(session_id).encode()

    @translate_redis_errors
    async def append(
        self,
        session_id: str,
        entry: JournalEntry,
        *,
        replacing: bytes = b"",
        epoch: int | None = None,
    ) -> int:
        """Record an applied request; the journal's length, 0 when the session ended.

        The entry replaces any other under its seq (one written ahead for a request that did
        not get it), and ``replacing`` (this request's own entry written ahead, ``ahead``).
        With ``epoch`` (the session's epoch the request's route was read at), ``STALE`` and
        nothing written when the session's processor was replaced since (the fence).
        """
        fence = b"" if epoch is None else b"%d" % epoch
        if self._pipe is not None:
            return await self._pipe.append(
                self._keys(session_id), entry.seq, _encode(entry), replacing, fence
            )
        length = await self._append(
            keys=[self.keys.session(session_id), self.keys.journal(session_id)],
            args=[entry.seq, _encode(entry), fence, *((replacing,) if replacing else ())],
        )
        return int(length)

    def ahead(
        self, session_id: str, entry: JournalEntry, epoch: int
    ) -> tuple[bytes, asyncio.Future[Any]] | None:
        """Write ``entry`` now under the seq it is expected to get, without waiting for Redis.

        Returns the stored member (to ``void`` it) and the future of Redis's reply (see
        ``JournalPipe.ahead``; ``STALE`` when the session's epoch is no longer ``epoch``), or
        ``None`` when it cannot be written at once (no pipe, or its connection not open yet):
        the caller appends once the processor answered.
        """
        if self._pipe is None:
            return None
        member = _encode(entry)
        reply = self._pipe.ahead(self._keys(session_id), entry.seq, member, b"%d" % epoch)
        return None if reply is None else (member, reply)

    @translate_redis_errors
    async def void(self, session_id: str, member: bytes) -> None:
        """Remove an entry written ahead for a request that was not applied as expected."""
        if self._pipe is not None:
            await self._pipe.void(self.keys.journal(session_id).encode(), member)
            return
        await self.redis.zrem(self.keys.journal(session_id), member)

    @translate_redis_errors
    async def mark_unnumbered(self, session_id: str) -> None:
        """Note that the processor applies writes the journal cannot keep (no ``X-Kato-Seq``)."""
        await self._append(
            keys=[self.keys.session(session_id), self.keys.journal(session_id)],
            args=[-1, _UNNUMBERED, ""],
        )

    @translate_redis_errors
    async def unnumbered(self, session_id: str) -> bool:
        """Whether writes went unjournaled since the last checkpoint (see ``mark_unnumbered``)."""
        return await self.redis.zscore(self.keys.journal(session_id), _UNNUMBERED) is not None

    @translate_redis_errors
    async def entries_after(self, session_id: str, seq: int) -> list[JournalEntry]:
        """The entries a snapshot at ``seq`` does not hold, in sequence order."""
        raw = await self.redis.zrangebyscore(self.keys.journal(session_id), f"({seq}", "+inf")
        return [_decode(cast("bytes", item)) for item in raw]

    @translate_redis_errors
    async def length(self, session_id: str) -> int:
        """Entries kept for the session."""
        return int(await self.redis.zcard(self.keys.journal(session_id)))

    @translate_redis_errors
    async def lengths(self, session_ids: Iterable[str]) -> list[int]:
        """Entries kept for each session (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.zcard(self.keys.journal(session_id))
            return [int(n) for n in await pipe.execute()]

    @translate_redis_errors
    async def trim(self, session_id: str, upto_seq: int) -> int:
        """Drop the entries a checkpoint at ``upto_seq`` holds; how many were dropped."""
        return int(
            await self.redis.zremrangebyscore(self.keys.journal(session_id), "-inf", upto_seq)
        )

    @translate_redis_errors
    async def delete(self, session_id: str) -> None:
        """Drop the whole journal (the session ended)."""
        await self.redis.delete(self.keys.journal(session_id))

    @contextlib.asynccontextmanager
    async def checkpoint_lock(
        self, session_id: str, ttl_ms: int, *, wait_s: float = 0.0
    ) -> AsyncIterator[bool]:
        """Hold the session's checkpoint lock, waiting up to ``wait_s``; yields whether taken.

        The lock expires after ``ttl_ms`` should its holder die.
        """
        lock = LeaderLease(self.redis, self.keys.checkpointing(session_id))
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        taken = await lock.acquire(token, ttl_ms)
        while not taken and time.monotonic() < deadline:
            await asyncio.sleep(_LOCK_POLL_S)
            taken = await lock.acquire(token, ttl_ms)
        try:
            yield taken
        finally:
            if taken:
                await lock.release(token)
