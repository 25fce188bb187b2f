"""The compare-and-set writes: reserve, transition, end and touch, each one Lua script.

Every change that touches several keys is one script (``lua/``), so a record, its deadlines
and its indexes never disagree. Scripts receive every key by its full name (``keys.Keys``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import redis.asyncio as aioredis

from session_manager.clock import Clock
from session_manager.errors import CapacityExceeded, Forbidden, SessionConflict
from session_manager.models import DEFAULT_TENANT, SessionRecord, SessionStatus, Tombstone
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.codec import (
    Deadline,
    deadline_arg,
    index_member,
    labels_from_hash,
    text,
    to_hash,
)
from session_manager.store.keys import Keys
from session_manager.store.scripts import register_script

__all__ = ("Capacity", "SessionWrites", "TransitionResult")


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    """The limits a new session must fit in, and how long a start may hold its slot.

    ``max_sessions`` and ``max_starts`` hold for the whole deployment; ``max_tenant_sessions``
    (default: ``max_sessions``) and ``max_per_user`` for the session's tenant.
    """

    max_sessions: int
    max_per_user: int
    max_starts: int
    start_timeout_ms: int
    retry_after_s: int = 5
    max_tenant_sessions: int | None = None
    tenant_limit: str = "TENANT_MAX_SESSIONS"
    """The tenant quota ``max_tenant_sessions`` comes from (``TENANT_MAX_MEMORY_MB`` when the
    tenant's memory quota allows fewer sessions than its session quota)."""


class TransitionResult(msgspec.Struct, frozen=True):
    """Outcome of a compare-and-set: ``ok``, and the status the session had (``None``: gone).

    ``epoch``: the session's epoch once it succeeded (the new one when it bumped it).
    """

    ok: bool
    previous: SessionStatus | None
    epoch: int = 0

    @classmethod
    def from_reply(cls, ok: int, previous: bytes, epoch: int = 0) -> TransitionResult:
        """The ``{ok, previous status or '', epoch}`` a script answers."""
        return cls(bool(ok), SessionStatus(previous.decode()) if previous else None, int(epoch))


class SessionWrites:
    """The four scripted writes, registered once per client."""

    def __init__(self, client: aioredis.Redis, keys: Keys, clock: Clock) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock
        self._reserve = register_script(client, "reserve.lua")
        self._transition = register_script(client, "transition.lua")
        self._end = register_script(client, "end.lua")
        self._touch = register_script(client, "touch.lua")

    @translate_redis_errors
    async def reserve(self, record: SessionRecord, capacity: Capacity) -> None:
        """Write ``record`` (status ``starting``) if every limit has room; else raise.

        Raises ``CapacityExceeded`` (429) naming the limit, ``SessionConflict`` when the id
        is taken, or ``Forbidden`` (403) when the knowledge base is another tenant's or another
        session's private one; a knowledge base nobody owns yet becomes the tenant's (or, named
        after the session itself, the session's). Restores and recoveries waiting
        for a start slot count as using one (they go first: ``start_queue``). The start slot
        stops counting after
        ``capacity.start_timeout_ms``, so a manager that dies mid-start does not hold it
        forever (``expired_starts`` lists it).
        """
        now = self.clock.now_ms()
        member = index_member(record.created_at, record.session_id)
        keys = [
            self.keys.session(record.session_id),
            self.keys.sessions,
            self.keys.status(SessionStatus.STARTING),
            self.keys.user(record.tenant, record.user_id),
            self.keys.starts,
            self.keys.start_waiters,
            self.keys.tenant(record.tenant),
            self.keys.knowledge_base(record.kb_id),
            self.keys.session(record.kb_id),
            *self.keys.labels(record.labels),
        ]
        private = record.kb_id == record.session_id
        args: list[str | int] = [
            record.session_id,
            member,
            now,
            now + capacity.start_timeout_ms,
            capacity.max_sessions,
            capacity.max_per_user,
            capacity.max_starts,
            capacity.max_tenant_sessions or capacity.max_sessions,
            f"{record.tenant} {record.session_id}" if private else record.tenant,
            record.tenant,
        ]
        for name, value in (to_hash(record) | {"ix": member}).items():
            args += [name, value]
        verdict, used = await self._reserve(keys=keys, args=args)
        verdict = verdict.decode()
        if verdict == "ok":
            return
        if verdict == "exists":
            raise SessionConflict(
                "a session with this id exists", session_id=record.session_id, taken=True
            )
        if verdict == "kb":
            raise _foreign_knowledge_base(record.kb_id, text(used))
        raise _refusal(verdict, int(used), capacity)

    @translate_redis_errors
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
        only_if_ref: str | None = None,
        only_if_epoch: int | None = None,
        bump_epoch: bool = False,
    ) -> TransitionResult:
        """Compare-and-set the status (and deadlines, start slot, fields) in one script.

        Succeeds only while the current status is one of ``allowed`` and, with
        ``only_if_idle_due_at``, while the idle deadline is still at or before that time (so a
        request that moved it after the reaper looked wins over the reap); with
        ``only_if_ref``, while the session's processor is still that one (two recoveries of
        one lost processor: the second finds it replaced and starts nothing); with
        ``only_if_epoch``, while the session's epoch is still that one (a restart given up
        meanwhile does not mark its processor ready over a newer start). ``bump_epoch``
        (a restart's claim) fences every processor the session had, in the same script.
        """
        keys = [
            self.keys.session(session_id),
            self.keys.idle,
            self.keys.hard,
            self.keys.starts,
            self.keys.changes,
            self.keys.status(to),
            *self.keys.all_statuses(),
        ]
        args: list[str | int] = [
            session_id,
            " ".join(allowed),
            to,
            self.clock.now_ms(),
            deadline_arg(idle_deadline),
            deadline_arg(hard_deadline),
            deadline_arg(start_slot),
            "" if only_if_idle_due_at is None else only_if_idle_due_at,
            only_if_ref or "",
            "1" if bump_epoch else "",
            "" if only_if_epoch is None else only_if_epoch,
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        return TransitionResult.from_reply(*await self._transition(keys=keys, args=args))

    @translate_redis_errors
    async def end(
        self,
        session_id: str,
        reason: str,
        tombstone_ttl_s: int,
        *,
        allowed: Iterable[SessionStatus] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> TransitionResult:
        """Remove the record, its deadlines, indexes and snapshot; leave a tombstone with TTL.

        The user set and label indexes are named from the record, read first; the script
        answers ``-1`` if the id was ended and reused in between, and the record is read again.
        """
        tombstone = Tombstone(
            reason=reason, ended_at=self.clock.now_ms(), details=dict(details or {})
        )
        while True:
            user_id, labels, tenant = await self.redis.hmget(
                self.keys.session(session_id), ["user_id", "labels", "tenant"]
            )
            if user_id is None:
                return TransitionResult(False, None)
            # Records written before tenants have no field: they count as the default tenant.
            owner = text(tenant) if tenant else DEFAULT_TENANT
            keys = [
                self.keys.session(session_id),
                self.keys.sessions,
                self.keys.idle,
                self.keys.hard,
                self.keys.starts,
                self.keys.tombstone(session_id),
                self.keys.snapshot(session_id),
                self.keys.changes,
                self.keys.user(owner, text(user_id)),
                self.keys.tenant(owner),
                self.keys.knowledge_base(session_id),
                self.keys.snapshot_totals,
                *self.keys.all_statuses(),
                *self.keys.labels(labels_from_hash(labels)),
            ]
            args: list[str | int | bytes] = [
                session_id,
                " ".join(allowed or ()),
                msgspec.json.encode(tombstone).decode(),
                tombstone_ttl_s * 1000,
                user_id,
                labels or b"",
                tenant or b"",
            ]
            ok, previous = await self._end(keys=keys, args=args)
            if ok != -1:
                return TransitionResult.from_reply(ok, previous)

    @translate_redis_errors
    async def touch(self, session_id: str) -> tuple[int, int | None] | None:
        """Move a ready session's idle deadline to now + its idle timeout.

        Returns the (idle, hard) deadlines, or ``None`` when the session is not ready.
        """
        keys = [self.keys.session(session_id), self.keys.idle, self.keys.hard]
        reply = await self._touch(keys=keys, args=[session_id, self.clock.now_ms()])
        if not reply:
            return None
        idle, hard = reply
        return int(float(idle)), (int(float(hard)) if hard else None)


_LIMITS = {
    "sessions": ("MAX_SESSIONS", "max_sessions"),
    "tenant": ("TENANT_MAX_SESSIONS", "max_tenant_sessions"),
    "user": ("MAX_SESSIONS_PER_USER", "max_per_user"),
    "starts": ("MAX_CONCURRENT_STARTS", "max_starts"),
}
"""``reserve.lua``'s refusal verdicts: the limit's name and its ``Capacity`` field."""


def _refusal(verdict: str, used: int, capacity: Capacity) -> CapacityExceeded:
    """The 429 for a reservation ``reserve.lua`` refused with ``verdict``."""
    name, field = _LIMITS[verdict]
    if verdict == "tenant":
        name = capacity.tenant_limit
    limit: int = getattr(capacity, field) or capacity.max_sessions
    return CapacityExceeded(
        f"capacity exhausted: {name} ({limit}) reached",
        retry_after_s=1 if verdict == "starts" else capacity.retry_after_s,
        limit=name,
        max=limit,
        used=used,
    )


def _foreign_knowledge_base(kb_id: str, owner: str) -> Forbidden:
    """The 403 for a ``kb_id`` someone else owns (which tenant is not said)."""
    if not owner or " " in owner:
        return Forbidden("kb_id names another session's private knowledge base", kb_id=kb_id)
    return Forbidden("the knowledge base belongs to another tenant", kb_id=kb_id)
