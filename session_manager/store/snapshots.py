"""Where snapshots live: the ``SnapshotStore`` seam, and Redis behind it today.

A snapshot is a processor's ``GET /state`` reply as the processor sent it: zstd-compressed
JSON (plain JSON from a processor that does not compress). The manager never opens it; it
stores the bytes at hibernation (and, for crash recovery, at each checkpoint) and hands them
back to ``PUT /state`` at restore.

``SnapshotStore`` is what the rest of the manager needs from a place that keeps them. Redis
(``RedisSnapshots``) is today's; a blob store (S3 and alike) or MongoDB GridFS would plug in
as another implementation of these five calls, given to ``SessionStore(snapshots=...)``. One
thing is Redis-specific: ending a session drops its Redis snapshot in the same script that
removes the record (``end.lua``, totals kept right), so another store must also be asked to
``delete`` when a session ends.

Totals (how many snapshots, how many bytes) are kept up to date by every write, so
``/admin/stats`` reads them in O(1) instead of walking the keys.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from session_manager.errors import StoreUnavailable
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.keys import Keys
from session_manager.store.scripts import register_script

__all__ = ("RedisSnapshots", "SnapshotStore", "SnapshotTotals")

_PUT_ATTEMPTS = 10


class SnapshotTotals(msgspec.Struct, frozen=True, kw_only=True):
    """How many snapshots are kept and their bytes, as stored (compressed)."""

    count: int
    bytes: int


class SnapshotStore(Protocol):
    """One opaque snapshot per session id: put, get, delete, size, and the totals.

    Every call is awaited (``async def`` implements it) and raises ``StoreUnavailable`` when
    the store cannot be reached. Snapshots are bytes, whole: compressed, they are a few MB even
    for states of hundreds of MB.
    """

    def put(self, session_id: str, snapshot: bytes) -> Awaitable[None]:
        """Keep ``snapshot`` for the session, replacing any earlier one."""
        ...

    def get(self, session_id: str) -> Awaitable[bytes | None]:
        """The session's snapshot, or ``None`` when none is kept."""
        ...

    def delete(self, session_id: str) -> Awaitable[None]:
        """Drop the session's snapshot; nothing happens when none is kept."""
        ...

    def size(self, session_id: str) -> Awaitable[int | None]:
        """The stored size of the session's snapshot in bytes, or ``None`` when none is kept."""
        ...

    def totals(self) -> Awaitable[SnapshotTotals]:
        """How many snapshots are kept, and their bytes in all."""
        ...


class RedisSnapshots:
    """``SnapshotStore`` in Redis: ``snapshot:{id}`` strings, totals in ``snapshots:totals``.

    Every write adjusts the totals in the same transaction (``put``) or script
    (``snapshot_delete.lua``, and ``end.lua`` when a session ends).
    """

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._delete = register_script(client, "snapshot_delete.lua")

    @translate_redis_errors
    async def put(self, session_id: str, snapshot: bytes) -> None:
        """Keep ``snapshot`` for the session, replacing any earlier one, totals adjusted.

        An optimistic transaction (``WATCH`` the key, read its size, ``MULTI`` ``SET`` +
        ``HINCRBY``) rather than a script: a script copies its arguments, and this one is MBs.
        """
        key = self.keys.snapshot(session_id)
        totals = self.keys.snapshot_totals
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(_PUT_ATTEMPTS):
                await pipe.watch(key)
                existed = bool(await pipe.exists(key))
                old = int(await pipe.strlen(key)) if existed else 0
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, snapshot)
                pipe.hincrby(totals, "bytes", len(snapshot) - old)
                if not existed:
                    pipe.hincrby(totals, "count", 1)
                try:
                    await pipe.execute()
                except WatchError:
                    continue  # written or dropped meanwhile: read its size again
                return
        raise StoreUnavailable(f"snapshot {key} kept changing during {_PUT_ATTEMPTS} writes")

    @translate_redis_errors
    async def get(self, session_id: str) -> bytes | None:
        """The session's snapshot, or ``None``."""
        value = await self.redis.get(self.keys.snapshot(session_id))
        return value.encode() if isinstance(value, str) else value

    @translate_redis_errors
    async def delete(self, session_id: str) -> None:
        """Drop the session's snapshot (totals adjusted)."""
        keys = [self.keys.snapshot(session_id), self.keys.snapshot_totals]
        await self._delete(keys=keys, args=[])

    @translate_redis_errors
    async def size(self, session_id: str) -> int | None:
        """``STRLEN`` of the snapshot, ``None`` when there is none."""
        key = self.keys.snapshot(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.strlen(key)
            exists, size = await pipe.execute()
        return int(size) if exists else None

    @translate_redis_errors
    async def totals(self) -> SnapshotTotals:
        """The running totals (one ``HMGET``)."""
        count, size = await self.redis.hmget(self.keys.snapshot_totals, ["count", "bytes"])
        return SnapshotTotals(count=int(count or 0), bytes=int(size or 0))
