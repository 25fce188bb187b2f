"""Token rotation: swap a session's token hash in one compare-and-set script."""

from __future__ import annotations

import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.keys import Keys
from session_manager.store.scripts import register_script

__all__ = ("TokenRotation",)


class TokenRotation:
    """``rotate_token.lua``, registered once per client."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.keys = keys
        self._rotate = register_script(client, "rotate_token.lua")

    @translate_redis_errors
    async def rotate(self, session_id: str, current_hash: str, new_hash: str) -> bool:
        """Store ``new_hash`` if the session still has ``current_hash``; publish the change."""
        keys = [self.keys.session(session_id), self.keys.changes]
        return bool(await self._rotate(keys=keys, args=[session_id, current_hash, new_hash]))
