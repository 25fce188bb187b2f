"""Reading session records (with their deadlines), routes and tombstones."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis

from session_manager.models import SessionRecord, SessionStatus, Tombstone
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import from_hash, text
from session_manager.store.keys import Keys

__all__ = ("RecordReads", "Route", "read_records")


class Route(msgspec.Struct, frozen=True):
    """The fields a proxied request needs from a session's record."""

    status: SessionStatus
    endpoint: str
    token_hash: str
    epoch: int = 0


async def read_records(
    client: aioredis.Redis, keys: Keys, session_ids: Iterable[str]
) -> list[SessionRecord | None]:
    """Each id's record joined with its two deadlines (``None`` where there is no record).

    Redis errors are left to the caller's ``translate_redis_errors``.
    """
    ids = list(session_ids)
    if not ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hgetall(keys.session(session_id))
            pipe.zscore(keys.idle, session_id)
            pipe.zscore(keys.hard, session_id)
        replies = await pipe.execute()
    return [
        from_hash(replies[i], replies[i + 1], replies[i + 2]) if replies[i] else None
        for i in range(0, len(replies), 3)
    ]


class RecordReads:
    """A session's record, route and tombstone: the reads a request makes."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    @translate_redis_errors
    async def get(self, session_id: str) -> SessionRecord | None:
        """The record with its deadlines, or ``None`` when there is no live session."""
        return (await read_records(self.redis, self.keys, [session_id]))[0]

    @translate_redis_errors
    async def get_many(self, session_ids: Iterable[str]) -> list[SessionRecord | None]:
        """Records for many ids in one round trip (``None`` where there is none)."""
        return await read_records(self.redis, self.keys, session_ids)

    @translate_redis_errors
    async def lookup(self, session_id: str) -> tuple[SessionRecord | None, Tombstone | None]:
        """Record and tombstone in one round trip: what a request for this id needs."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.session(session_id))
            pipe.get(self.keys.tombstone(session_id))
            fields, tomb = await pipe.execute()
        record = from_hash(fields, None, None) if fields else None
        tombstone = msgspec.json.decode(tomb, type=Tombstone) if tomb else None
        return record, tombstone

    @translate_redis_errors
    async def route(self, session_id: str) -> Route | None:
        """Status, endpoint, token hash and epoch in one ``HMGET``: the request hot path."""
        status, endpoint, token_hash, epoch = await self.redis.hmget(
            self.keys.session(session_id), ["status", "endpoint", "token_hash", "epoch"]
        )
        if status is None:
            return None
        return Route(
            SessionStatus(text(status)),
            text(endpoint or b""),
            text(token_hash or b""),
            int(epoch or 0),
        )

    @translate_redis_errors
    async def tombstone(self, session_id: str) -> Tombstone | None:
        """Why the session ended, while its tombstone lives."""
        raw = await self.redis.get(self.keys.tombstone(session_id))
        return msgspec.json.decode(raw, type=Tombstone) if raw else None
