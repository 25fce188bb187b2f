"""Admin listing: counts per status and pages of sessions in creation order from a cursor.

Pages walk a listing index (``keys.Keys``) with ``ZRANGE … BYLEX LIMIT`` after the member
the cursor names, so a cursor stays valid while sessions come and go.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from session_manager.clock import Clock
from session_manager.models import SessionRecord, SessionStatus
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import (
    decode_cursor,
    encode_cursor,
    member_session_id,
    text,
    texts,
)
from session_manager.store.keys import Keys
from session_manager.store.records import read_records

__all__ = ("Page", "SessionListing")


class Page(msgspec.Struct, frozen=True):
    """One page of the admin listing; ``next_cursor`` is ``None`` on the last page."""

    records: list[SessionRecord]
    next_cursor: str | None


class SessionListing:
    """Reads over the listing indexes (never on the request path)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, clock: Clock) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock

    @translate_redis_errors
    async def counts(self) -> dict[str, int]:
        """Sessions per status, plus ``total`` and ``starts`` (start slots in use)."""
        statuses = list(SessionStatus)
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in statuses:
                pipe.zcard(self.keys.status(status))
            pipe.zcard(self.keys.sessions)
            pipe.zcount(self.keys.starts, self.clock.now_ms() + 1, "+inf")
            replies = await pipe.execute()
        counts = {str(status): int(n) for status, n in zip(statuses, replies, strict=False)}
        counts["total"] = int(replies[-2])
        counts["starts"] = int(replies[-1])
        return counts

    @translate_redis_errors
    async def page(
        self,
        *,
        limit: int,
        cursor: str | None,
        status: SessionStatus | None,
        user_id: str | None,
        label: tuple[str, str] | None,
        tenant: str | None = None,
    ) -> Page:
        """One page of live sessions in creation order, filtered, from an opaque cursor.

        Walks the most selective index (the tenant's user's set, else the label, else the
        tenant's, else the status, else all sessions) and checks the other filters on the
        records; one call reads at most ``4 * limit`` index entries, so a page may come back
        short with a ``next_cursor``. ``user_id`` without ``tenant`` matches that user name in
        every tenant.
        """
        filters = _Filters(status, user_id, label, tenant)
        after = decode_cursor(cursor) if cursor else None
        budget = 4 * limit
        records: list[SessionRecord] = []
        last: str | None = None
        exhausted = False
        while len(records) < limit and budget > 0:
            chunk = min(budget, max(limit - len(records), 50))
            members = await self._index_members(after, chunk, filters)
            budget -= chunk
            if not members:
                exhausted = True
                break
            batch = await read_records(
                self.redis, self.keys, (member_session_id(m) for m in members)
            )
            for member, record in zip(members, batch, strict=True):
                last = member
                if record is not None and filters.match(record):
                    records.append(record)
                    if len(records) == limit:
                        break
            after = last
            if len(members) < chunk and last == members[-1]:
                exhausted = True
                break
        next_cursor = None if exhausted or last is None else encode_cursor(last)
        return Page(records, next_cursor)

    async def _index_members(self, after: str | None, count: int, filters: _Filters) -> list[str]:
        if filters.user_id is not None and filters.tenant is not None:
            user_set = self.keys.user(filters.tenant, filters.user_id)
            ids = texts(await self.redis.smembers(user_set))
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id in ids:
                    pipe.hget(self.keys.session(session_id), "ix")
                members = sorted(text(m) for m in await pipe.execute() if m)
            return [m for m in members if after is None or m > after][:count]
        if filters.label is not None:
            key = self.keys.label(*filters.label)
        elif filters.tenant is not None:
            key = self.keys.tenant(filters.tenant)
        elif filters.status is not None:
            key = self.keys.status(filters.status)
        else:
            key = self.keys.sessions
        start = "-" if after is None else "(" + after
        return texts(await self.redis.zrange(key, start, "+", bylex=True, offset=0, num=count))


class _Filters(msgspec.Struct, frozen=True):
    """What a listing asks for; ``None`` is no filter."""

    status: SessionStatus | None
    user_id: str | None
    label: tuple[str, str] | None
    tenant: str | None

    def match(self, record: SessionRecord) -> bool:
        if self.status is not None and record.status != self.status:
            return False
        if self.user_id is not None and record.user_id != self.user_id:
            return False
        if self.tenant is not None and record.tenant != self.tenant:
            return False
        return self.label is None or record.labels.get(self.label[0]) == self.label[1]
