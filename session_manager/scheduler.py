"""The timers: reaper and reconciler passes on the one instance holding the Redis lease.

APScheduler 3's ``AsyncIOScheduler`` runs its jobs in the app's event loop: the lease
(acquire or renew every third of ``LEADER_TTL_S``), this instance's heartbeat in the replica
registry (as often, on every instance; see ``store.replicas``), the reaper every
``REAP_INTERVAL_S``, the reconciler every ``RECONCILE_INTERVAL_S`` plus once at start-up, and
(``JOURNAL=on``) the checkpointer every ``CHECKPOINT_INTERVAL_S``. A pass runs only while this
instance holds ``leader:reaper``; when the holder dies its lease expires and another instance
takes over within ``LEADER_TTL_S``. Errors (Redis down, a backend hiccup) are logged and the
next tick tries again; stopping the scheduler never stops processors (``SHUTDOWN_ACTION`` is
applied after it, by ``shutdown``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from session_manager.checkpointer import Checkpointer
from session_manager.errors import KatoError
from session_manager.reaper import Reaper
from session_manager.reconciler import Reconciler
from session_manager.settings import Settings
from session_manager.store import SessionStore

__all__ = ("Scheduler",)

log = logging.getLogger(__name__)

T = TypeVar("T")


class Scheduler:
    """Owns the APScheduler instance and this instance's claim on the lease."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        reaper: Reaper,
        reconciler: Reconciler,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.reaper = reaper
        self.reconciler = reconciler
        self.checkpointer = checkpointer
        self.instance_id = f"{settings.manager_id}-{uuid.uuid4().hex[:12]}"
        self.leader = False
        self._lease_lock = asyncio.Lock()
        self._beat_lock = asyncio.Lock()
        self._stopped = False
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)

    @property
    def _ttl_ms(self) -> int:
        return int(self.settings.leader_ttl_s * 1000)

    @property
    def replica_stale_ms(self) -> int:
        """An instance whose heartbeat is older than this counts as dead (three missed beats)."""
        return self._ttl_ms

    def start(self) -> None:
        """Add the jobs and start the timers (the lease is tried at once)."""
        now = dt.datetime.now(dt.UTC)
        jobs: list[tuple[Callable[[], Awaitable[object]], float, dt.datetime | None]] = [
            (self.hold_lease, self.settings.leader_ttl_s / 3, now),
            (self.heartbeat, self.settings.leader_ttl_s / 3, now),
            (self.reap, self.settings.reap_interval_s, None),
            (self.reconcile, self.settings.reconcile_interval_s, now),
        ]
        if self.checkpointer is not None:
            jobs.append((self.checkpoint, self.settings.checkpoint_interval_s, None))
        for job, every_s, first in jobs:
            # APScheduler reads an explicit ``next_run_time=None`` as "paused": pass it only
            # for the jobs that also run at start-up.
            when = {} if first is None else {"next_run_time": first}
            self._scheduler.add_job(
                job,
                "interval",
                seconds=every_s,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                id=job.__name__,
                **when,
            )
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop the timers and give the lease up so that another instance takes over at once."""
        self._scheduler.shutdown(wait=False)
        async with self._beat_lock:  # a heartbeat in flight must not re-register a stopped instance
            self._stopped = True
        if self.leader:
            try:
                await self.store.release_leader(self.instance_id)
            except KatoError:
                log.warning("could not release the reaper lease")
            self.leader = False

    async def hold_lease(self) -> bool:
        """Renew the lease if held, else try to take it; True while this instance leads."""
        async with self._lease_lock:  # jobs that start together must not race each other
            try:
                taken = await self.store.renew_leader(
                    self.instance_id, self._ttl_ms
                ) or await self.store.acquire_leader(self.instance_id, self._ttl_ms)
            except KatoError as exc:
                log.warning("reaper lease unavailable: %s", exc.message)
                taken = False
            if taken != self.leader:
                log.info(
                    "reaper leadership %s",
                    "taken" if taken else "lost",
                    extra={"instance": self.instance_id},
                )
            self.leader = taken
            return taken

    async def heartbeat(self) -> None:
        """Tell the replica registry this instance is alive (every instance, leader or not)."""
        async with self._beat_lock:
            if self._stopped:
                return
            try:
                await self.store.replica_beat(self.instance_id, self.replica_stale_ms)
            except KatoError as exc:
                log.warning("replica heartbeat failed: %s", exc.message)

    async def _leader_pass(self, name: str, run: Callable[[], Awaitable[T]]) -> T | None:
        """``run`` on the leader only; its failure is logged (the next tick tries again)."""
        if not await self.hold_lease():
            return None
        try:
            return await run()
        except KatoError as exc:
            log.warning("%s pass failed: %s", name, exc.message)
        except Exception:
            log.exception("%s pass failed", name)
        return None

    async def reap(self) -> None:
        """A reaper pass, on the leader only."""
        await self._leader_pass("reaper", self.reaper.reap_once)

    async def checkpoint(self) -> None:
        """A checkpoint pass (journaled sessions' state saved, journals trimmed), on the leader."""
        if self.checkpointer is None:
            return
        done = await self._leader_pass("checkpoint", self.checkpointer.checkpoint_once)
        if done:
            log.info("checkpoint pass", extra={"checkpointed": len(done)})

    async def reconcile(self) -> None:
        """A reconciler pass, on the leader only."""
        report = await self._leader_pass("reconciler", self.reconciler.reconcile_once)
        if report is None:
            return
        counts = {
            "orphans_removed": len(report.orphans_removed),
            "recovered": len(report.recovered),
            "lost": len(report.lost),
            "stale_starts_ended": len(report.stale_starts_ended),
            "stale_restarts_hibernated": len(report.stale_restarts_hibernated),
            "stale_hibernations_served": len(report.stale_hibernations_served),
        }
        if any(counts.values()):
            log.info("reconciler pass", extra=counts)
