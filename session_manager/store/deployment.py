"""The deployment id: generated once per Redis (and prefix), then read by every replica.

It marks the processors this deployment starts (process env marker, container label). Two
deployments with their own Redis get different ids, so neither ever adopts or removes the
other's processors; replicas sharing a Redis read the same id and adopt each other's.
"""

from __future__ import annotations

import re
import secrets

import redis.asyncio as aioredis

from session_manager.errors import StoreUnavailable
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import text

__all__ = ("deployment_id", "new_deployment_id", "processor_key")

_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
"""The ``MANAGER_ID`` rule: usable as a Docker label value and an environment value."""


def new_deployment_id() -> str:
    """``kato-`` and 64 random bits: unique per deployment, readable in ``ps`` and labels."""
    return f"kato-{secrets.token_hex(8)}"


@translate_redis_errors
async def deployment_id(client: aioredis.Redis, key: str) -> str:
    """The id stored at ``key``; the first caller's candidate wins (``SET NX``)."""
    await client.set(key, new_deployment_id(), nx=True)
    stored = await client.get(key)
    value = text(stored) if stored else ""
    if not _VALID.match(value):
        raise StoreUnavailable("the deployment id in Redis is missing or malformed", key=key)
    return value


@translate_redis_errors
async def processor_key(client: aioredis.Redis, key: str) -> str:
    """The processor-secret key stored at ``key`` (256 random bits); the first caller's wins."""
    await client.set(key, secrets.token_hex(32), nx=True)
    stored = await client.get(key)
    value = text(stored) if stored else ""
    if len(value) < 32:
        raise StoreUnavailable("the processor key in Redis is missing or malformed", key=key)
    return value
