"""Hibernation snapshots: a processor's ``GET /state`` body, kept while it is stopped."""

from __future__ import annotations

import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.keys import Keys

__all__ = ("Snapshots",)


class Snapshots:
    """One snapshot per session id; ending the session deletes it (``end.lua``)."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    @translate_redis_errors
    async def save(self, session_id: str, state: bytes) -> None:
        """Keep a hibernated processor's state."""
        await self.redis.set(self.keys.snapshot(session_id), state)

    @translate_redis_errors
    async def exists(self, session_id: str) -> bool:
        """Whether a snapshot is kept for the session."""
        return bool(await self.redis.exists(self.keys.snapshot(session_id)))

    @translate_redis_errors
    async def load(self, session_id: str) -> bytes | None:
        """The saved state, if any."""
        value = await self.redis.get(self.keys.snapshot(session_id))
        return value.encode() if isinstance(value, str) else value

    @translate_redis_errors
    async def delete(self, session_id: str) -> None:
        """Drop the saved state once a processor holds it again."""
        await self.redis.delete(self.keys.snapshot(session_id))
