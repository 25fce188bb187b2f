"""The reconciler: make what the backend runs agree with what Redis says (desired vs actual).

* A processor carrying this deployment's id (``list_owned``) that no record in this
  deployment's Redis claims is an orphan (a manager died between starting it and recording it,
  or a removal failed); it is removed once it has been an orphan for ``ORPHAN_GRACE_S``, so
  that a start in flight is never mistaken for one. The id is generated per deployment
  (``store.deployment``), so another deployment's processors are never listed, let alone
  removed.
* A ``ready`` record whose processor is gone is restarted from its checkpoint and journal
  (``Sessions.recoverable``: always with ``JOURNAL=on``, else only from a snapshot), else ended
  with reason ``processor_lost``. The proxy usually gets there first (``recover_lost``).
* A ``hibernating`` record older than a hibernation can last (its manager died mid-way) is
  served again: its processor unfenced, or, already stopped after its state was saved,
  recovered from that checkpoint and the journal.
* A ``starting`` record whose start slot expired (its manager died mid-start, or the start
  outlived its slot) is given up (``Lifecycle.abandon_start``): a first start is ended, a
  restore's or recovery's session goes back to ``hibernated``, checkpoint and journal kept.

Nothing here runs when Redis cannot be read: an outage never makes processors look orphaned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import msgspec

from session_manager.backends.base import Backend, ProcessorHandle
from session_manager.clock import Clock
from session_manager.errors import KatoError
from session_manager.metrics import Metrics
from session_manager.models import EndReason, SessionRecord, SessionStatus
from session_manager.sessions import Sessions
from session_manager.settings import Settings
from session_manager.store import SessionStore

__all__ = ("ReconcileReport", "Reconciler")

log = logging.getLogger(__name__)

_BATCH = 500


class ReconcileReport(msgspec.Struct, kw_only=True):
    """What one pass found and did."""

    started_at: int
    duration_ms: float = 0.0
    processors: int = 0
    orphans_removed: list[str] = msgspec.field(default_factory=list)
    orphans_waiting: int = 0
    recovered: list[str] = msgspec.field(default_factory=list)
    lost: list[str] = msgspec.field(default_factory=list)
    stale_starts_ended: list[str] = msgspec.field(default_factory=list)
    stale_restarts_hibernated: list[str] = msgspec.field(default_factory=list)
    stale_hibernations_served: list[str] = msgspec.field(default_factory=list)
    failed: dict[str, str] = msgspec.field(default_factory=dict)


class Reconciler:
    """Compares the backend's processors with the records; remembers when orphans appeared."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        sessions: Sessions,
        backend: Backend,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sessions = sessions
        self.backend = backend
        self.metrics = metrics
        self.clock = clock
        self._orphan_since: dict[str, int] = {}

    async def reconcile_once(self) -> ReconcileReport:
        """One pass; raises ``StoreUnavailable`` (doing nothing) when Redis cannot be read."""
        began = time.perf_counter()
        now = self.clock.now_ms()
        report = ReconcileReport(started_at=now)
        owned = await self.backend.list_owned()
        report.processors = len(owned)
        await self._remove_orphans(owned, now, report)
        await self._serve_stale_hibernations(now, report)
        await self._replace_vanished({h.ref for h in owned}, report)
        await self._give_up_stale_starts(now, report)
        report.duration_ms = (time.perf_counter() - began) * 1000
        return report

    async def _remove_orphans(
        self, owned: list[ProcessorHandle], now: int, report: ReconcileReport
    ) -> None:
        ids = [h.session_id or "" for h in owned]
        records = await self.store.get_many(ids)
        orphans = [
            handle
            for handle, record in zip(owned, records, strict=True)
            if _is_orphan(handle, record)
        ]
        seen = {h.ref for h in orphans}
        self._orphan_since = {r: t for r, t in self._orphan_since.items() if r in seen}
        grace_ms = self.settings.orphan_grace_s * 1000
        for handle in orphans:
            since = self._orphan_since.setdefault(handle.ref, now)
            if now - since < grace_ms:
                report.orphans_waiting += 1
                continue
            try:
                await self.backend.stop(handle)
            except KatoError as exc:
                report.failed[handle.ref] = f"{exc.code}: {exc.message}"
                continue
            self._orphan_since.pop(handle.ref, None)
            self.metrics.orphans_removed.inc()
            report.orphans_removed.append(handle.ref)
            log.info(
                "orphan processor removed",
                extra={"ref": handle.ref, "session_id": handle.session_id},
            )

    async def _records(self, status: SessionStatus) -> AsyncIterator[list[SessionRecord | None]]:
        """The records of every session with ``status``, ``_BATCH`` at a time."""
        batch: list[str] = []
        async for session_id in self.store.iter_status(status, _BATCH):
            batch.append(session_id)
            if len(batch) >= _BATCH:
                yield await self.store.get_many(batch)
                batch = []
        if batch:
            yield await self.store.get_many(batch)

    async def _replace_vanished(self, alive: set[str], report: ReconcileReport) -> None:
        async for records in self._records(SessionStatus.READY):
            await self._check_ready(records, alive, report)

    async def _check_ready(
        self, records: list[SessionRecord | None], alive: set[str], report: ReconcileReport
    ) -> None:
        for record in records:
            handle = record.handle if record is not None else None
            if record is None or handle is None or handle.backend != self.backend.name:
                continue
            if handle.ref in alive or await self.backend.is_alive(handle):
                continue
            session_id = record.session_id
            try:
                event = await self.sessions.exit_event(record)
                if await self.sessions.recoverable(session_id):
                    if await self.sessions.recover(record, event=event) is not None:
                        report.recovered.append(session_id)
                        self.metrics.recoveries.labels(by="reconciler").inc()
                        log.info(
                            "lost processor replaced from checkpoint and journal",
                            extra={"session_id": session_id},
                        )
                elif await self.sessions.end(
                    session_id,
                    EndReason.PROCESSOR_LOST,
                    allowed=(SessionStatus.READY,),
                    details={"event": event} if event else None,
                ):
                    self.sessions.note_exit(record, event)
                    report.lost.append(session_id)
                    self.metrics.reaped.labels(EndReason.PROCESSOR_LOST.value).inc()
                    log.info("session ended: processor lost", extra={"session_id": session_id})
            except KatoError as exc:
                report.failed[session_id] = f"{exc.code}: {exc.message}"

    async def _serve_stale_hibernations(self, now: int, report: ReconcileReport) -> None:
        async for records in self._records(SessionStatus.HIBERNATING):
            for record in records:
                if record is None:
                    continue
                try:
                    served = await self.sessions.abandon_hibernation(record, now)
                except KatoError as exc:
                    report.failed[record.session_id] = f"{exc.code}: {exc.message}"
                    continue
                if served:
                    report.stale_hibernations_served.append(record.session_id)
                    log.warning(
                        "hibernation left half done (its manager died): serving again",
                        extra={"session_id": record.session_id},
                    )

    async def _give_up_stale_starts(self, now: int, report: ReconcileReport) -> None:
        for session_id in await self.store.expired_starts(now, _BATCH):
            try:
                outcome = await self.sessions.abandon_start(session_id)
            except KatoError as exc:
                report.failed[session_id] = f"{exc.code}: {exc.message}"
                continue
            if outcome == "ended":
                report.stale_starts_ended.append(session_id)
            elif outcome == "hibernated":
                report.stale_restarts_hibernated.append(session_id)


def _is_orphan(handle: ProcessorHandle, record: SessionRecord | None) -> bool:
    """No record claims it. A record in a transition may not have recorded its new processor."""
    if record is None:
        return True
    if record.status in (SessionStatus.STARTING, SessionStatus.TERMINATING):
        return False
    return record.ref != handle.ref
