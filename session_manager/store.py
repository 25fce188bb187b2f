"""SessionStore: the only code that spells a Redis key (Lua scripts in ``lua/`` included).

Keys, under the prefix (default ``kato:``):

* ``session:{id}``: hash, the record (``SessionRecord`` fields, genes/labels as JSON, ``ix``)
* ``deadline:idle`` / ``deadline:hard``: zsets, session id -> deadline ms
* ``starts``: zset, session id -> start deadline ms (the concurrent-start limit)
* ``user:{user_id}``: set of that user's session ids (the per-user limit)
* ``sessions``, ``status:{status}``, ``label:{k}={v}``: listing indexes; zsets with score 0
  whose members ``{created_at:013d}:{id}`` sort by creation time, paged with
  ``ZRANGE … BYLEX LIMIT`` from an opaque cursor (stable while sessions come and go)
* ``tombstone:{id}``: JSON ``Tombstone`` with a TTL; ``snapshot:{id}``: hibernated state
* ``leader:reaper``: the reaper lease, ``SET NX PX``
* ``changes``: pub/sub channel; every status change and end publishes the session id

Every multi-key change is one Lua script, so records and indexes never disagree. Redis
connection errors and timeouts become ``StoreUnavailable`` here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import importlib.resources
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, Literal, ParamSpec, TypeVar

import msgspec
import redis.asyncio as aioredis
import redis.exceptions

from session_manager.clock import Clock
from session_manager.errors import CapacityExceeded, SessionConflict, StoreUnavailable
from session_manager.models import SessionRecord, SessionStatus, Tombstone

__all__ = ("Capacity", "Deadline", "Page", "Route", "SessionStore", "TransitionResult")

P = ParamSpec("P")
T = TypeVar("T")

Deadline = int | Literal["remove"] | None
"""A deadline change: a time in ms sets it, ``"remove"`` unschedules it, ``None`` keeps it."""

_REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    TimeoutError,
    OSError,
)

_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) else return 0 end"
)


def _store_errors(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Translate "Redis cannot be reached" into ``StoreUnavailable`` (503)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with _translated():
            return await method(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except _REDIS_DOWN as exc:
        raise StoreUnavailable(
            "the session store (Redis) cannot be reached", error=str(exc)
        ) from exc


def _lua(name: str) -> str:
    return importlib.resources.files("session_manager").joinpath("lua", name).read_text()


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    """The three limits a new session must fit in, and how long a start may hold its slot."""

    max_sessions: int
    max_per_user: int
    max_starts: int
    start_timeout_ms: int
    retry_after_s: int = 5


class TransitionResult(msgspec.Struct, frozen=True):
    """Outcome of a compare-and-set: ``ok``, and the status the session had (``None``: gone)."""

    ok: bool
    previous: SessionStatus | None


class Route(msgspec.Struct, frozen=True):
    """The three fields a proxied request needs from a session's record."""

    status: SessionStatus
    endpoint: str
    token_hash: str


class Page(msgspec.Struct, frozen=True):
    """One page of the admin listing; ``next_cursor`` is ``None`` on the last page."""

    records: list[SessionRecord]
    next_cursor: str | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Iterable[Any]) -> list[str]:
    return [_text(v) for v in values]


def _member(created_at: int, session_id: str) -> str:
    return f"{created_at:013d}:{session_id}"


def _session_id(member: bytes | str) -> str:
    text = member.decode() if isinstance(member, bytes) else member
    return text.split(":", 1)[1]


def encode_cursor(member: str) -> str:
    """An opaque cursor for the listing position just after ``member``."""
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The index member a cursor points after, or ``None`` when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    created, sep, session_id = text.partition(":")
    if not sep or len(created) != 13 or not created.isdigit() or not session_id:
        return None
    return text


def _deadline_arg(value: Deadline) -> str:
    if value is None:
        return ""
    if value == "remove":
        return "-"
    return str(value)


class SessionStore:
    """Session records, deadlines, indexes, tombstones, snapshots and the reaper lease."""

    def __init__(self, client: aioredis.Redis, prefix: str, clock: Clock) -> None:
        self.redis = client
        self.prefix = prefix
        self.clock = clock
        self._reserve = client.register_script(_lua("reserve.lua"))
        self._transition = client.register_script(_lua("transition.lua"))
        self._end = client.register_script(_lua("end.lua"))
        self._touch = client.register_script(_lua("touch.lua"))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    # -- key spelling -----------------------------------------------------------------------

    def _session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def _user(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    def _status(self, status: str) -> str:
        return f"{self.prefix}status:{status}"

    def _label(self, key: str, value: str) -> str:
        return f"{self._label_prefix}{key}={value}"

    @property
    def _label_prefix(self) -> str:
        return f"{self.prefix}label:"

    def _tombstone(self, session_id: str) -> str:
        return f"{self.prefix}tombstone:{session_id}"

    def _snapshot(self, session_id: str) -> str:
        return f"{self.prefix}snapshot:{session_id}"

    @property
    def _sessions(self) -> str:
        return f"{self.prefix}sessions"

    @property
    def _idle(self) -> str:
        return f"{self.prefix}deadline:idle"

    @property
    def _hard(self) -> str:
        return f"{self.prefix}deadline:hard"

    @property
    def _starts(self) -> str:
        return f"{self.prefix}starts"

    @property
    def _changes(self) -> str:
        return f"{self.prefix}changes"

    @property
    def _leader(self) -> str:
        return f"{self.prefix}leader:reaper"

    # -- records ----------------------------------------------------------------------------

    @_store_errors
    async def reserve(self, record: SessionRecord, capacity: Capacity) -> None:
        """Write ``record`` (status ``starting``) if every limit has room; else raise.

        Raises ``CapacityExceeded`` (429) naming the limit, or ``SessionConflict`` when the id
        is taken. The start slot stops counting after ``capacity.start_timeout_ms``, so a
        manager that dies mid-start does not hold it forever (``expired_starts`` lists it).
        """
        now = self.clock.now_ms()
        member = _member(record.created_at, record.session_id)
        fields = _to_hash(record) | {"ix": member}
        keys = [
            self._session(record.session_id),
            self._sessions,
            self._status(SessionStatus.STARTING),
            self._user(record.user_id),
            self._starts,
            *(self._label(k, v) for k, v in record.labels.items()),
        ]
        args: list[str | int] = [
            record.session_id,
            member,
            now,
            now + capacity.start_timeout_ms,
            capacity.max_sessions,
            capacity.max_per_user,
            capacity.max_starts,
        ]
        for name, value in fields.items():
            args += [name, value]
        verdict, used = await self._reserve(keys=keys, args=args)
        verdict = verdict.decode()
        if verdict == "ok":
            return
        if verdict == "exists":
            raise SessionConflict("a session with this id exists", session_id=record.session_id)
        limits = {
            "sessions": ("MAX_SESSIONS", capacity.max_sessions),
            "user": ("MAX_SESSIONS_PER_USER", capacity.max_per_user),
            "starts": ("MAX_CONCURRENT_STARTS", capacity.max_starts),
        }
        name, limit = limits[verdict]
        retry_after = 1 if verdict == "starts" else capacity.retry_after_s
        raise CapacityExceeded(
            f"capacity exhausted: {name} ({limit}) reached",
            retry_after_s=retry_after,
            limit=name,
            max=limit,
            used=int(used),
        )

    @_store_errors
    async def get(self, session_id: str) -> SessionRecord | None:
        """The record with its deadlines, or ``None`` when there is no live session."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._session(session_id))
            pipe.zscore(self._idle, session_id)
            pipe.zscore(self._hard, session_id)
            fields, idle, hard = await pipe.execute()
        if not fields:
            return None
        return _from_hash(fields, idle, hard)

    @_store_errors
    async def get_many(self, session_ids: Iterable[str]) -> list[SessionRecord | None]:
        """Records for many ids in one round trip (``None`` where there is none)."""
        ids = list(session_ids)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(self._session(session_id))
                pipe.zscore(self._idle, session_id)
                pipe.zscore(self._hard, session_id)
            replies = await pipe.execute()
        return [
            _from_hash(replies[i], replies[i + 1], replies[i + 2]) if replies[i] else None
            for i in range(0, len(replies), 3)
        ]

    @_store_errors
    async def lookup(self, session_id: str) -> tuple[SessionRecord | None, Tombstone | None]:
        """Record and tombstone in one round trip: what a request for this id needs."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._session(session_id))
            pipe.get(self._tombstone(session_id))
            fields, tomb = await pipe.execute()
        record = _from_hash(fields, None, None) if fields else None
        tombstone = msgspec.json.decode(tomb, type=Tombstone) if tomb else None
        return record, tombstone

    @_store_errors
    async def route(self, session_id: str) -> Route | None:
        """Status, endpoint and token hash in one ``HMGET``: the request hot path."""
        status, endpoint, token_hash = await self.redis.hmget(
            self._session(session_id), ["status", "endpoint", "token_hash"]
        )
        if status is None:
            return None
        return Route(SessionStatus(_text(status)), _text(endpoint or b""), _text(token_hash or b""))

    @_store_errors
    async def tombstone(self, session_id: str) -> Tombstone | None:
        """Why the session ended, while its tombstone lives."""
        raw = await self.redis.get(self._tombstone(session_id))
        return msgspec.json.decode(raw, type=Tombstone) if raw else None

    @_store_errors
    async def transition(
        self,
        session_id: str,
        *,
        allowed: Iterable[SessionStatus],
        to: SessionStatus,
        fields: Mapping[str, str | int] | None = None,
        idle_deadline: Deadline = None,
        hard_deadline: Deadline = None,
        start_slot: Deadline = None,
        only_if_idle_due_at: int | None = None,
    ) -> TransitionResult:
        """Compare-and-set the status (and deadlines, start slot, fields) in one script.

        Succeeds only while the current status is one of ``allowed`` and, with
        ``only_if_idle_due_at``, while the idle deadline is still at or before that time (so a
        request that moved it after the reaper looked wins over the reap).
        """
        args: list[str | int] = [
            self._status(""),
            session_id,
            " ".join(allowed),
            to,
            self.clock.now_ms(),
            _deadline_arg(idle_deadline),
            _deadline_arg(hard_deadline),
            _deadline_arg(start_slot),
            "" if only_if_idle_due_at is None else only_if_idle_due_at,
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        keys = [self._session(session_id), self._idle, self._hard, self._starts, self._changes]
        ok, previous = await self._transition(keys=keys, args=args)
        return TransitionResult(bool(ok), SessionStatus(previous.decode()) if previous else None)

    @_store_errors
    async def end(
        self,
        session_id: str,
        reason: str,
        tombstone_ttl_s: int,
        *,
        allowed: Iterable[SessionStatus] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TransitionResult:
        """Remove the record, its deadlines, indexes and snapshot; leave a tombstone with TTL."""
        tombstone = Tombstone(
            reason=reason, ended_at=self.clock.now_ms(), details=dict(details or {})
        )
        keys = [
            self._session(session_id),
            self._sessions,
            self._idle,
            self._hard,
            self._starts,
            self._tombstone(session_id),
            self._snapshot(session_id),
            self._changes,
        ]
        args: list[str | int] = [
            self._status(""),
            self._user(""),
            self._label_prefix,
            session_id,
            " ".join(allowed or ()),
            msgspec.json.encode(tombstone).decode(),
            tombstone_ttl_s * 1000,
        ]
        ok, previous = await self._end(keys=keys, args=args)
        return TransitionResult(bool(ok), SessionStatus(previous.decode()) if previous else None)

    @_store_errors
    async def touch(self, session_id: str) -> tuple[int, int | None] | None:
        """Move a ready session's idle deadline to now + its idle timeout.

        Returns the (idle, hard) deadlines, or ``None`` when the session is not ready.
        """
        keys = [self._session(session_id), self._idle, self._hard]
        reply = await self._touch(keys=keys, args=[session_id, self.clock.now_ms()])
        if not reply:
            return None
        idle, hard = reply
        return int(float(idle)), (int(float(hard)) if hard else None)

    async def changes(self) -> AsyncGenerator[str, None]:
        """Ids of sessions whose status changed, as every replica's scripts publish them.

        Yields ``""`` first, once subscribed: changes before that point were not seen. Raises
        ``StoreUnavailable`` when the subscription breaks (messages may have been lost).
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            with _translated():
                await pubsub.subscribe(self._changes)
            yield ""
            while True:
                with _translated():
                    message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    yield _text(message["data"])
        finally:
            with contextlib.suppress(*_REDIS_DOWN, redis.exceptions.RedisError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- reaper and reconciler --------------------------------------------------------------

    @_store_errors
    async def due_idle(self, now_ms: int, limit: int, offset: int = 0) -> list[str]:
        """Ids whose idle deadline is at or before ``now_ms``, oldest first, at most ``limit``."""
        return _texts(
            await self.redis.zrangebyscore(self._idle, "-inf", now_ms, start=offset, num=limit)
        )

    @_store_errors
    async def due_hard(self, now_ms: int, limit: int, offset: int = 0) -> list[str]:
        """Ids whose max-age deadline is at or before ``now_ms``, oldest first."""
        return _texts(
            await self.redis.zrangebyscore(self._hard, "-inf", now_ms, start=offset, num=limit)
        )

    @_store_errors
    async def expired_starts(self, now_ms: int, limit: int) -> list[str]:
        """Sessions still ``starting`` whose start deadline passed (their manager died)."""
        return _texts(
            await self.redis.zrangebyscore(self._starts, "-inf", now_ms, start=0, num=limit)
        )

    async def iter_status(self, status: SessionStatus, batch: int = 500) -> AsyncIterator[str]:
        """Every id with ``status``, in creation order, read in batches (off the request path)."""
        start = "-"
        while True:
            with _translated():
                members = _texts(
                    await self.redis.zrange(
                        self._status(status), start, "+", bylex=True, offset=0, num=batch
                    )
                )
            for member in members:
                yield _session_id(member)
            if len(members) < batch:
                return
            start = "(" + members[-1]

    @_store_errors
    async def exists_many(self, session_ids: Iterable[str]) -> list[bool]:
        """Whether each id has a record (one round trip)."""
        ids = list(session_ids)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.exists(self._session(session_id))
            return [bool(n) for n in await pipe.execute()]

    @_store_errors
    async def save_snapshot(self, session_id: str, state: bytes) -> None:
        """Keep a hibernated processor's ``GET /state`` body."""
        await self.redis.set(self._snapshot(session_id), state)

    @_store_errors
    async def has_snapshot(self, session_id: str) -> bool:
        """Whether a hibernation snapshot is kept for the session."""
        return bool(await self.redis.exists(self._snapshot(session_id)))

    @_store_errors
    async def load_snapshot(self, session_id: str) -> bytes | None:
        """The saved state, if any."""
        value = await self.redis.get(self._snapshot(session_id))
        return value.encode() if isinstance(value, str) else value

    @_store_errors
    async def delete_snapshot(self, session_id: str) -> None:
        """Drop the saved state once a processor holds it again."""
        await self.redis.delete(self._snapshot(session_id))

    @_store_errors
    async def acquire_leader(self, instance_id: str, ttl_ms: int) -> bool:
        """Take the reaper lease when nobody holds it (``SET NX PX``)."""
        return bool(await self.redis.set(self._leader, instance_id, nx=True, px=ttl_ms))

    @_store_errors
    async def renew_leader(self, instance_id: str, ttl_ms: int) -> bool:
        """Extend the lease if ``instance_id`` still holds it."""
        return bool(await self._renew(keys=[self._leader], args=[instance_id, ttl_ms]))

    @_store_errors
    async def release_leader(self, instance_id: str) -> None:
        """Give the lease up if ``instance_id`` holds it."""
        await self._release(keys=[self._leader], args=[instance_id])

    @_store_errors
    async def leader(self) -> str | None:
        """Who holds the reaper lease now."""
        value = await self.redis.get(self._leader)
        return _text(value) if value else None

    @_store_errors
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        await self.redis.ping()

    # -- admin ------------------------------------------------------------------------------

    @_store_errors
    async def counts(self) -> dict[str, int]:
        """Sessions per status, plus ``total`` and ``starts`` (start slots in use)."""
        statuses = list(SessionStatus)
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in statuses:
                pipe.zcard(self._status(status))
            pipe.zcard(self._sessions)
            pipe.zcount(self._starts, self.clock.now_ms() + 1, "+inf")
            replies = await pipe.execute()
        counts = {str(status): int(n) for status, n in zip(statuses, replies, strict=False)}
        counts["total"] = int(replies[-2])
        counts["starts"] = int(replies[-1])
        return counts

    @_store_errors
    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        status: SessionStatus | None = None,
        user_id: str | None = None,
        label: tuple[str, str] | None = None,
    ) -> Page:
        """One page of live sessions in creation order, filtered, from an opaque cursor.

        Walks the most selective index (the user's set, else the label, else the status,
        else all sessions) and checks the other filters on the records; one call reads at most
        ``4 * limit`` index entries, so a page may come back short with a ``next_cursor``.
        """
        after = decode_cursor(cursor) if cursor else None
        budget = 4 * limit
        records: list[SessionRecord] = []
        last: str | None = None
        exhausted = False
        while len(records) < limit and budget > 0:
            chunk = min(budget, max(limit - len(records), 50))
            members = await self._index_members(after, chunk, user_id, label, status)
            budget -= chunk
            if not members:
                exhausted = True
                break
            batch = await self.get_many(_session_id(m) for m in members)
            for member, record in zip(members, batch, strict=True):
                last = member
                if record is not None and _matches(record, status, user_id, label):
                    records.append(record)
                    if len(records) == limit:
                        break
            after = last
            if len(members) < chunk and last == members[-1]:
                exhausted = True
                break
        next_cursor = None if exhausted or last is None else encode_cursor(last)
        return Page(records, next_cursor)

    async def _index_members(
        self,
        after: str | None,
        count: int,
        user_id: str | None,
        label: tuple[str, str] | None,
        status: SessionStatus | None,
    ) -> list[str]:
        if user_id is not None:
            ids = _texts(await self.redis.smembers(self._user(user_id)))
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id in ids:
                    pipe.hget(self._session(session_id), "ix")
                members = sorted(_text(m) for m in await pipe.execute() if m)
            return [m for m in members if after is None or m > after][:count]
        if label is not None:
            key = self._label(*label)
        elif status is not None:
            key = self._status(status)
        else:
            key = self._sessions
        start = "-" if after is None else "(" + after
        return _texts(await self.redis.zrange(key, start, "+", bylex=True, offset=0, num=count))


def _matches(
    record: SessionRecord,
    status: SessionStatus | None,
    user_id: str | None,
    label: tuple[str, str] | None,
) -> bool:
    if status is not None and record.status != status:
        return False
    if user_id is not None and record.user_id != user_id:
        return False
    return label is None or record.labels.get(label[0]) == label[1]


_INT_FIELDS = (
    "created_at",
    "last_activity",
    "status_changed_at",
    "idle_timeout_s",
    "max_age_s",
)
_STR_FIELDS = (
    "session_id",
    "user_id",
    "kb_id",
    "processor_id",
    "status",
    "token_hash",
    "backend",
    "ref",
    "endpoint",
)


def _to_hash(record: SessionRecord) -> dict[str, str | int]:
    fields: dict[str, str | int] = {name: getattr(record, name) for name in _STR_FIELDS}
    fields.update({name: getattr(record, name) for name in _INT_FIELDS})
    fields["genes"] = msgspec.json.encode(record.genes).decode()
    fields["labels"] = msgspec.json.encode(record.labels).decode()
    return fields


def _from_hash(
    fields: Mapping[bytes, bytes], idle: float | None, hard: float | None
) -> SessionRecord:
    values: dict[str, Any] = {}
    for name in _STR_FIELDS:
        values[name] = fields.get(name.encode(), b"").decode()
    for name in _INT_FIELDS:
        values[name] = int(fields.get(name.encode(), b"0"))
    values["genes"] = msgspec.json.decode(fields.get(b"genes", b"{}"))
    values["labels"] = msgspec.json.decode(fields.get(b"labels", b"{}"), type=dict[str, str])
    values["status"] = SessionStatus(values["status"])
    values["idle_deadline"] = None if idle is None else int(idle)
    values["hard_deadline"] = None if hard is None else int(hard)
    return SessionRecord(**values)
