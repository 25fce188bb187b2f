"""What the reaper and reconciler sweep over: due deadlines, expired starts, ids by status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import redis.asyncio as aioredis

from session_manager.models import SessionStatus
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import member_session_id, texts
from session_manager.store.keys import Keys

__all__ = ("SweepReads",)


class SweepReads:
    """Batched reads off the request path, oldest first."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    @translate_redis_errors
    async def due(self, deadlines: str, now_ms: int, limit: int, offset: int = 0) -> list[str]:
        """Ids in the ``deadlines`` zset scored at or before ``now_ms``, at most ``limit``."""
        return texts(
            await self.redis.zrangebyscore(deadlines, "-inf", now_ms, start=offset, num=limit)
        )

    async def iter_status(self, status: SessionStatus, batch: int) -> AsyncIterator[str]:
        """Every id with ``status``, in creation order, read in batches."""
        start = "-"
        while True:
            with translate_redis_errors:
                members = texts(
                    await self.redis.zrange(
                        self.keys.status(status), start, "+", bylex=True, offset=0, num=batch
                    )
                )
            for member in members:
                yield member_session_id(member)
            if len(members) < batch:
                return
            start = "(" + members[-1]

    @translate_redis_errors
    async def exists_many(self, session_ids: Iterable[str]) -> list[bool]:
        """Whether each id has a record (one round trip)."""
        ids = list(session_ids)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.exists(self.keys.session(session_id))
            return [bool(n) for n in await pipe.execute()]
