"""SessionStore: the one object callers hold for sessions in Redis.

It keeps the public surface in one place: the scripted compare-and-set writes come from
``writes``, and each other call goes to the module that owns the concern: ``records``
(request reads), ``sweeps`` (reaper and reconciler reads), ``snapshots``, ``lease``,
``listing`` (admin), ``feed`` and ``replicas`` (which manager instances are alive).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable

import redis.asyncio as aioredis

from session_manager.clock import Clock
from session_manager.models import SessionRecord, SessionStatus, Tombstone
from session_manager.store.bindings import PoolBindings
from session_manager.store.boundary import translate_redis_errors
from session_manager.store.deployment import deployment_id, processor_key
from session_manager.store.feed import listen
from session_manager.store.journal import Journal
from session_manager.store.keys import Keys
from session_manager.store.lease import LeaderLease
from session_manager.store.listing import Page, SessionListing
from session_manager.store.records import RecordReads, Route
from session_manager.store.replicas import ReplicaRegistry
from session_manager.store.snapshots import RedisSnapshots, SnapshotStore, SnapshotTotals
from session_manager.store.start_queue import StartClaim, StartQueue
from session_manager.store.sweeps import SweepReads
from session_manager.store.tokens import TokenRotation
from session_manager.store.v3 import V3Records
from session_manager.store.writes import SessionWrites

__all__ = ("SessionStore",)


class SessionStore(SessionWrites):
    """Session records, deadlines, indexes, tombstones, snapshots and the reaper lease.

    The scripted writes (``reserve``, ``transition``, ``end``, ``touch``) are inherited from
    ``SessionWrites``; every other call is handed to the module that owns it.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        clock: Clock,
        *,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        super().__init__(client, Keys(prefix), clock)
        self.prefix = prefix
        self._reads = RecordReads(client, self.keys)
        self._sweeps = SweepReads(client, self.keys)
        self.snapshots: SnapshotStore = snapshots or RedisSnapshots(client, self.keys)
        """Where snapshots live (``store/snapshots.py``: the seam for a blob store)."""
        self._lease = LeaderLease(client, self.keys.leader)
        self._replicas = ReplicaRegistry(client, self.keys.replicas)
        self._listing = SessionListing(client, self.keys, clock)
        self._start_queue = StartQueue(client, self.keys)
        self.journal = Journal(client, self.keys)
        """Each session's acknowledged mutating requests since its checkpoint (crash recovery)."""
        self._tokens = TokenRotation(client, self.keys)
        self.v3 = V3Records(client, self.keys)
        """The KATO v3 API's fields, deadlines and node generations (``store.v3``)."""
        self.pool_bindings = PoolBindings(client, self.keys.pool_bindings)
        """Which session each claimed warm-pool container serves (docker, swarm)."""

    # -- the change feed -----------------------------------------------------------------------

    def changes(self) -> AsyncGenerator[str, None]:
        """Ids of sessions whose status changed, as every replica's scripts publish them.

        Yields ``""`` first, once subscribed: changes before that point were not seen. Raises
        ``StoreUnavailable`` when the subscription breaks (messages may have been lost).
        """
        return listen(self.redis, self.keys.changes)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record with its deadlines, or ``None`` when there is no live session."""
        return await self._reads.get(session_id)

    async def get_many(self, session_ids: Iterable[str]) -> list[SessionRecord | None]:
        """Records for many ids in one round trip (``None`` where there is none)."""
        return await self._reads.get_many(session_ids)

    async def lookup(self, session_id: str) -> tuple[SessionRecord | None, Tombstone | None]:
        """Record and tombstone in one round trip: what a request for this id needs."""
        return await self._reads.lookup(session_id)

    async def route(self, session_id: str) -> Route | None:
        """Status, endpoint and token hash in one ``HMGET``: the request hot path."""
        return await self._reads.route(session_id)

    async def tombstone(self, session_id: str) -> Tombstone | None:
        """Why the session ended, while its tombstone lives."""
        return await self._reads.tombstone(session_id)

    # -- reaper and reconciler -----------------------------------------------------------------

    async def due_idle(self, now_ms: int, limit: int, offset: int = 0) -> list[str]:
        """Ids whose idle deadline is at or before ``now_ms``, oldest first, at most ``limit``."""
        return await self._sweeps.due(self.keys.idle, now_ms, limit, offset)

    async def due_hard(self, now_ms: int, limit: int, offset: int = 0) -> list[str]:
        """Ids whose max-age deadline is at or before ``now_ms``, oldest first."""
        return await self._sweeps.due(self.keys.hard, now_ms, limit, offset)

    async def expired_starts(self, now_ms: int, limit: int) -> list[str]:
        """Sessions still ``starting`` whose start deadline passed (their manager died)."""
        return await self._sweeps.due(self.keys.starts, now_ms, limit)

    @translate_redis_errors
    async def start_deadline(self, session_id: str) -> int | None:
        """When the session's start slot expires (ms), if it holds one."""
        score = await self.redis.zscore(self.keys.starts, session_id)
        return None if score is None else int(score)

    def iter_status(self, status: SessionStatus, batch: int = 500) -> AsyncIterator[str]:
        """Every id with ``status``, in creation order, read in batches (off the request path)."""
        return self._sweeps.iter_status(status, batch)

    async def exists_many(self, session_ids: Iterable[str]) -> list[bool]:
        """Whether each id has a record (one round trip)."""
        return await self._sweeps.exists_many(session_ids)

    # -- the start queue (restores and recoveries waiting for a slot) -------------------------

    async def claim_start(
        self,
        session_id: str,
        *,
        allowed: Iterable[SessionStatus],
        arrival_ms: int,
        slot_ms: int,
        max_starts: int,
        only_if_ref: str | None = None,
    ) -> tuple[StartClaim, int]:
        """Wait in line for a start slot held ``slot_ms``; the claim and the slot's deadline.

        One attempt: call again (before ``WAITER_LEASE_MS``) while ``queued``. With
        ``only_if_ref``, ``moved`` once the session's processor is no longer that one.
        """
        now = self.clock.now_ms()
        claim = await self._start_queue.claim(
            session_id,
            allowed=allowed,
            now_ms=now,
            arrival_ms=arrival_ms,
            slot_deadline_ms=now + slot_ms,
            max_starts=max_starts,
            only_if_ref=only_if_ref,
        )
        return claim, now + slot_ms

    async def leave_start_queue(self, session_id: str) -> None:
        """Leave the line without a slot."""
        await self._start_queue.leave(session_id)

    async def release_start(self, session_id: str) -> None:
        """Give back a claimed slot the session did not use."""
        await self._start_queue.release(session_id)

    async def starts_waiting(self) -> int:
        """Sessions waiting for a start slot, on every replica."""
        return await self._start_queue.waiting(self.clock.now_ms())

    # -- hibernation snapshots, reaper lease, health, admin ------------------------------------

    async def save_snapshot(self, session_id: str, state: bytes) -> None:
        """Keep a processor's ``GET /state`` body as sent (compressed), replacing any earlier."""
        await self.snapshots.put(session_id, state)

    async def has_snapshot(self, session_id: str) -> bool:
        """Whether a snapshot is kept for the session."""
        return await self.snapshots.size(session_id) is not None

    async def load_snapshot(self, session_id: str) -> bytes | None:
        """The saved state, if any."""
        return await self.snapshots.get(session_id)

    async def delete_snapshot(self, session_id: str) -> None:
        """Drop the saved state once a processor holds it again."""
        await self.snapshots.delete(session_id)

    async def snapshot_totals(self) -> SnapshotTotals:
        """How many snapshots are kept and their stored bytes (O(1): running totals)."""
        return await self.snapshots.totals()

    async def acquire_leader(self, instance_id: str, ttl_ms: int) -> bool:
        """Take the reaper lease when nobody holds it (``SET NX PX``)."""
        return await self._lease.acquire(instance_id, ttl_ms)

    async def renew_leader(self, instance_id: str, ttl_ms: int) -> bool:
        """Extend the lease if ``instance_id`` still holds it."""
        return await self._lease.renew(instance_id, ttl_ms)

    async def release_leader(self, instance_id: str) -> None:
        """Give the lease up if ``instance_id`` holds it."""
        await self._lease.release(instance_id)

    async def leader(self) -> str | None:
        """Who holds the reaper lease now."""
        return await self._lease.holder()

    # -- the replica registry ------------------------------------------------------------------

    async def replica_beat(self, instance_id: str, stale_ms: int) -> int:
        """Mark this manager instance alive now; how many instances are alive, itself included."""
        return await self._replicas.beat(instance_id, stale_ms)

    async def replica_leave(self, instance_id: str, stale_ms: int) -> int:
        """This manager instance stops: how many other instances are still alive."""
        return await self._replicas.leave(instance_id, stale_ms)

    async def replicas(self) -> list[str]:
        """The registered manager instance ids (stale ones until the next beat drops them)."""
        return await self._replicas.members()

    @translate_redis_errors
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        await self.redis.ping()

    async def counts(self) -> dict[str, int]:
        """Sessions per status, plus ``total`` and ``starts`` (start slots in use)."""
        return await self._listing.counts()

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        status: SessionStatus | None = None,
        user_id: str | None = None,
        label: tuple[str, str] | None = None,
        tenant: str | None = None,
    ) -> Page:
        """One page of live sessions in creation order (see ``SessionListing.page``)."""
        return await self._listing.page(
            limit=limit, cursor=cursor, status=status, user_id=user_id, label=label, tenant=tenant
        )

    # -- deployment identity and token rotation (issue 13) -------------------------------------

    async def deployment_id(self) -> str:
        """This deployment's id, generated by the first manager to ask (see ``deployment``)."""
        return await deployment_id(self.redis, self.keys.deployment)

    async def processor_key(self) -> str:
        """The key processor secrets derive from, generated by the first manager to ask."""
        return await processor_key(self.redis, self.keys.processor_key)

    async def rotate_token(self, session_id: str, current_hash: str, new_hash: str) -> bool:
        """Swap the token hash if it is still ``current_hash``; every replica hears of it."""
        return await self._tokens.rotate(session_id, current_hash, new_hash)
