"""The replica registry: which manager instances of a deployment are alive, by heartbeat.

Every instance refreshes its entry in the ``replicas`` zset on a timer (``beat``); an entry not
refreshed within the stale time counts as a dead instance and is dropped by the next call. A
stopping instance ``leave``s and learns how many others are left: only the last one acts on the
deployment's sessions (``SHUTDOWN_ACTION``). Both calls are one script each and use Redis's own
clock, so replicas on different hosts need not agree on the time.

A killed instance (``kill -9``) leaves a stale entry behind; until it expires, a stopping
instance still counts it and leaves the sessions running, which is the safe side.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import texts
from session_manager.store.scripts import register_script

__all__ = ("ReplicaRegistry",)


class ReplicaRegistry:
    """The heartbeats of one deployment's manager instances, in one zset."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.redis = client
        self.key = key
        self._beat = register_script(client, "replica_beat.lua")
        self._leave = register_script(client, "replica_leave.lua")

    @translate_redis_errors
    async def beat(self, instance_id: str, stale_ms: int) -> int:
        """Mark ``instance_id`` alive now; the number of live instances, itself included."""
        return int(await self._beat(keys=[self.key], args=[instance_id, stale_ms]))

    @translate_redis_errors
    async def leave(self, instance_id: str, stale_ms: int) -> int:
        """Remove ``instance_id``; the number of other instances still alive."""
        return int(await self._leave(keys=[self.key], args=[instance_id, stale_ms]))

    @translate_redis_errors
    async def members(self) -> list[str]:
        """Every registered instance id, stale ones included, oldest heartbeat first."""
        return texts(await self.redis.zrange(self.key, 0, -1))
