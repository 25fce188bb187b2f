"""Which session a claimed warm-pool container serves (docker and swarm backends, issue 15).

A container's (or service's) labels are fixed once it runs, and a pooled one was started with
its pool id as its ``io.kato.session`` label, before any session existed. When the pool hands
it to a session the binding is kept here, one hash field per pool id: every replica of the
deployment reads the same one, and it survives a manager restart as the containers do. Pool
ids are random, so a binding never names another container.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import text

__all__ = ("PoolBindings",)


class PoolBindings:
    """Pool id -> session id, in one Redis hash (``keys.pool_bindings``)."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self._redis = client
        self._key = key

    @translate_redis_errors
    async def bind(self, pool_id: str, session_id: str) -> None:
        """Record that the pooled container ``pool_id`` now serves ``session_id``."""
        await self._redis.hset(self._key, pool_id, session_id)

    @translate_redis_errors
    async def sessions_of(self, pool_ids: Sequence[str]) -> dict[str, str]:
        """The bound ones among ``pool_ids``: pool id -> session id."""
        if not pool_ids:
            return {}
        values = await self._redis.hmget(self._key, list(pool_ids))
        return {p: text(v) for p, v in zip(pool_ids, values, strict=True) if v}

    @translate_redis_errors
    async def forget(self, pool_id: str) -> None:
        """Drop the binding (its container is gone)."""
        await self._redis.hdel(self._key, pool_id)
