"""What the KATO v3 API keeps beside a session's record: its v3 fields, deadline and node.

A v3 session is an ordinary session (its record, deadlines, processor) plus ``V3Record`` at
``v3:session:{id}``. Its v3 deadline (TTL, moved by every session route but ``exists``, set
by ``extend``) is a score in ``v3:deadline``, which also answers ``GET /sessions/count``.
``v3:node:{kb_id}`` counts the learns and clears on a node's knowledge base, so a session's
processor knows when to re-read the shared store (MongoDB); with memory stores,
``v3:node:{kb_id}:log`` holds the changes themselves, which every processor of the node applies
(``processor_image.engine.sharing``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from session_manager.store.boundary import translate_redis_errors
from session_manager.store.keys import Keys

__all__ = ("V3Record", "V3Records")


class V3Record(msgspec.Struct, kw_only=True):
    """A v3 session's own fields, as v3 reports them back."""

    node_id: str
    kb_id: str
    tenant: str
    created_at_us: int
    """Creation instant in epoch microseconds (v3 shows microseconds)."""
    ttl_seconds: int
    metadata: dict[str, Any] = {}
    config: dict[str, Any] = {}
    """The session's configuration overrides (v3 keys); the effective one adds defaults."""


_RECORD = msgspec.json.Decoder(V3Record)


class V3Records:
    """Reads and writes of v3 sessions' fields, deadlines and node generations."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    @translate_redis_errors
    async def put(self, session_id: str, record: V3Record, deadline_ms: int) -> None:
        """Store a new (or changed) record and its deadline."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.v3_session(session_id), msgspec.json.encode(record))
            pipe.zadd(self._keys.v3_deadlines, {session_id: deadline_ms})
            await pipe.execute()

    @translate_redis_errors
    async def get(self, session_id: str) -> tuple[V3Record | None, int | None]:
        """The record and its deadline (ms), each ``None`` when absent."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.v3_session(session_id))
            pipe.zscore(self._keys.v3_deadlines, session_id)
            raw, score = await pipe.execute()
        record = _RECORD.decode(raw) if raw is not None else None
        return record, (int(score) if score is not None else None)

    @translate_redis_errors
    async def extend(self, session_id: str, deadline_ms: int) -> bool:
        """Move the deadline of a session that still has one (``XX``); False when it has none."""
        changed = await self._redis.zadd(
            self._keys.v3_deadlines, {session_id: deadline_ms}, xx=True, ch=True
        )
        if changed:
            return True
        score = await self._redis.zscore(self._keys.v3_deadlines, session_id)
        return score is not None

    @translate_redis_errors
    async def forget(self, session_id: str) -> bool:
        """Remove the session's v3 fields and deadline; True when this call removed them."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.v3_session(session_id))
            pipe.zrem(self._keys.v3_deadlines, session_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    @translate_redis_errors
    async def count(self, now_ms: int) -> int:
        """v3 sessions whose deadline has not passed."""
        return int(await self._redis.zcount(self._keys.v3_deadlines, now_ms, "+inf"))

    @translate_redis_errors
    async def due(self, now_ms: int, limit: int) -> list[str]:
        """Ids of v3 sessions whose deadline has passed, oldest first."""
        ids = await self._redis.zrangebyscore(
            self._keys.v3_deadlines, "-inf", now_ms, start=0, num=limit
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    @translate_redis_errors
    async def generation(self, kb_id: str) -> int:
        """How many learns and clears the node's knowledge base has seen (0: none)."""
        raw = await self._redis.get(self._keys.v3_node(kb_id))
        return int(raw) if raw is not None else 0

    @translate_redis_errors
    async def changed(self, kb_id: str) -> int:
        """Count one more learn or clear on the node's knowledge base; the new generation."""
        return int(await self._redis.incr(self._keys.v3_node(kb_id)))

    @translate_redis_errors
    async def log_length(self, kb_id: str) -> int:
        """Entries in the node's knowledge log."""
        return int(await self._redis.llen(self._keys.v3_node_log(kb_id)))

    @translate_redis_errors
    async def log_since(self, kb_id: str, offset: int) -> list[Any]:
        """The node's knowledge log from ``offset`` on, decoded."""
        raw = await self._redis.lrange(self._keys.v3_node_log(kb_id), offset, -1)
        return [msgspec.json.decode(entry) for entry in raw]

    @translate_redis_errors
    async def log_append(self, kb_id: str, origin: str, ops: list[dict[str, Any]]) -> int:
        """Append ``origin``'s changes to the node's knowledge log; its new length."""
        entries = [msgspec.json.encode({**op, "origin": origin}) for op in ops]
        return int(await self._redis.rpush(self._keys.v3_node_log(kb_id), *entries))
