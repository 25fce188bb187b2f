"""The reaper's leader lease: one holder at a time, a TTL so a dead holder loses it.

``SET NX PX`` takes it; renewing and releasing check the holder in a script, so a manager
whose lease expired (and was taken by another) cannot extend or drop the new holder's lease.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import text
from session_manager.store.scripts import register_script

__all__ = ("LeaderLease",)


class LeaderLease:
    """The lease stored at one key."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.redis = client
        self.key = key
        self._renew = register_script(client, "renew_lease.lua")
        self._release = register_script(client, "release_lease.lua")

    @translate_redis_errors
    async def acquire(self, holder: str, ttl_ms: int) -> bool:
        """Take the lease when nobody holds it (``SET NX PX``)."""
        return bool(await self.redis.set(self.key, holder, nx=True, px=ttl_ms))

    @translate_redis_errors
    async def renew(self, holder: str, ttl_ms: int) -> bool:
        """Extend the lease if ``holder`` still holds it."""
        return bool(await self._renew(keys=[self.key], args=[holder, ttl_ms]))

    @translate_redis_errors
    async def release(self, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""
        await self._release(keys=[self.key], args=[holder])

    @translate_redis_errors
    async def holder(self) -> str | None:
        """Who holds the lease now."""
        value = await self.redis.get(self.key)
        return text(value) if value else None
