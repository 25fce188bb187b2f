"""The change feed: session ids that every replica's scripts publish on a status change or end.

Replicas listen to drop their cached routes; a broken subscription raises
``StoreUnavailable`` so the listener knows messages may have been lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import redis.asyncio as aioredis
import redis.exceptions

from session_manager.store.boundary import REDIS_DOWN, translate_redis_errors
from session_manager.store.codec import text

__all__ = ("listen",)


async def listen(client: aioredis.Redis, channel: str) -> AsyncGenerator[str, None]:
    """Yield ``""`` once subscribed to ``channel``, then each message published on it."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        with translate_redis_errors:
            await pubsub.subscribe(channel)
        yield ""
        while True:
            with translate_redis_errors:
                message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                yield text(message["data"])
    finally:
        with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
            # Untyped before redis 8.2, typed since: the ignore must hold for both.
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
