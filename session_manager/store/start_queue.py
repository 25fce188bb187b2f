"""The start queue: restores and recoveries wait here, oldest first, for a start slot.

Creates and restarts share ``MAX_CONCURRENT_STARTS`` through the ``starts`` zset. A create
that finds it full is refused at once (429); a session that already exists instead waits in
``starts:queue`` (one Redis zset for every replica, ordered by arrival), and only the oldest
waiters may claim a slot that frees up (``claim_start.lua``). Each waiter renews a short lease
in ``starts:waiters`` while it polls, so one whose manager died drops out of the line within
``WAITER_LEASE_MS``; a claimed slot expires like a create's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from session_manager.models import SessionStatus
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.keys import Keys
from session_manager.store.scripts import register_script

__all__ = ("WAITER_LEASE_MS", "StartClaim", "StartQueue")

WAITER_LEASE_MS = 3_000
"""A waiter that has not polled for this long is dropped from the line (its manager died)."""


class StartClaim(msgspec.Struct, frozen=True):
    """One attempt at a slot: ``claimed``, ``queued`` (``ahead`` wait first), or ``moved``.

    ``moved``: the session left the allowed statuses (another claimant started it, or it
    ended), or the processor a recovery found lost (another recovery replaced it). While
    another claimant holds the id's slot but has not moved it yet, ``queued``.
    """

    verdict: Literal["claimed", "queued", "moved"]
    ahead: int


class StartQueue:
    """``claim`` a slot in arrival order, ``leave`` the line, ``release`` an unused slot."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._claim = register_script(client, "claim_start.lua")

    @translate_redis_errors
    async def claim(
        self,
        session_id: str,
        *,
        allowed: Iterable[SessionStatus],
        now_ms: int,
        arrival_ms: int,
        slot_deadline_ms: int,
        max_starts: int,
        only_if_ref: str | None = None,
    ) -> StartClaim:
        """Join the line at ``arrival_ms`` (or stay in it) and take a slot if it is our turn."""
        keys = [
            self.keys.session(session_id),
            self.keys.starts,
            self.keys.start_queue,
            self.keys.start_waiters,
        ]
        args: list[str | int] = [
            session_id,
            " ".join(allowed),
            now_ms,
            arrival_ms,
            now_ms + WAITER_LEASE_MS,
            slot_deadline_ms,
            max_starts,
            only_if_ref or "",
        ]
        verdict, ahead = await self._claim(keys=keys, args=args)
        return StartClaim(verdict.decode(), int(ahead))

    @translate_redis_errors
    async def leave(self, session_id: str) -> None:
        """Leave the line without a slot (the caller gave up or was cancelled)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.start_queue, session_id)
            pipe.zrem(self.keys.start_waiters, session_id)
            await pipe.execute()

    @translate_redis_errors
    async def release(self, session_id: str) -> None:
        """Give back a claimed slot that was not used (the status changed before the start)."""
        await self.redis.zrem(self.keys.starts, session_id)

    @translate_redis_errors
    async def waiting(self, now_ms: int) -> int:
        """Sessions waiting for a slot now, on every replica (live waiters only)."""
        return int(await self.redis.zcount(self.keys.start_waiters, now_ms + 1, "+inf"))
