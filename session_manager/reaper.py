"""The reaper: sessions past their idle or max-age deadline are hibernated or ended.

One pass (``reap_once``) is a plain coroutine; the scheduler calls it on a timer on the leader
instance, and ``POST /admin/reap`` calls it on demand. Whether a session goes is decided by a
pure function (``verdict``) from its record and one ``now``.

The race with a request: the reaper acts only through compare-and-set transitions that also
require the idle deadline to still be at or before the ``now`` the pass started with. A request
that arrives before the transition moves the deadline, so the reap is skipped; one that arrives
after it finds the session ``hibernating``, waits, and restores it. Either way nothing is lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time

import msgspec

from session_manager.clock import Clock, iso
from session_manager.errors import KatoError
from session_manager.metrics import Metrics
from session_manager.models import EndReason, SessionRecord, SessionStatus
from session_manager.sessions import Sessions
from session_manager.settings import Settings
from session_manager.store import SessionStore

__all__ = ("Action", "ReapReport", "Reaper", "verdict")

log = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What a pass does to one due session."""

    HIBERNATE = "hibernate"
    END_IDLE = "end_idle"
    END_HIBERNATED = "end_hibernated"
    END_MAX_AGE = "end_max_age"


def verdict(record: SessionRecord, now_ms: int, reap_action: str) -> Action | None:
    """Should this session go now, and how? ``None`` leaves it alone.

    Sessions in a transition (starting, hibernating, terminating) are left for a later pass.
    Max age always ends a session; an idle hibernated one ends when its ``HIBERNATE_TTL_S`` has
    run out (its idle deadline then holds that).
    """
    if record.status not in (SessionStatus.READY, SessionStatus.HIBERNATED):
        return None
    if record.hard_deadline is not None and record.hard_deadline <= now_ms:
        return Action.END_MAX_AGE
    if record.idle_deadline is None or record.idle_deadline > now_ms:
        return None
    if record.status == SessionStatus.HIBERNATED:
        return Action.END_HIBERNATED
    return Action.HIBERNATE if reap_action == "hibernate" else Action.END_IDLE


class ReapReport(msgspec.Struct, kw_only=True):
    """What one pass did (the body of ``POST /admin/reap``)."""

    started_at: str
    """When the pass began (ISO 8601)."""
    duration_ms: float = 0.0
    examined: int = 0
    hibernated: list[str] = msgspec.field(default_factory=list)
    ended: dict[str, list[str]] = msgspec.field(default_factory=dict)
    skipped: int = 0
    failed: dict[str, str] = msgspec.field(default_factory=dict)


_REASONS = {
    Action.END_IDLE: EndReason.IDLE,
    Action.END_HIBERNATED: EndReason.IDLE,
    Action.END_MAX_AGE: EndReason.MAX_AGE,
}
_METRIC_REASONS = {
    Action.HIBERNATE: "idle",
    Action.END_IDLE: "idle",
    Action.END_HIBERNATED: "hibernate_ttl",
    Action.END_MAX_AGE: "max_age",
}


class Reaper:
    """Runs passes over the deadline sets with bounded concurrency."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        sessions: Sessions,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sessions = sessions
        self.metrics = metrics
        self.clock = clock

    async def reap_once(self) -> ReapReport:
        """One pass: every session due now, in batches, oldest deadline first."""
        began = time.perf_counter()
        now = self.clock.now_ms()
        report = ReapReport(started_at=iso(now) or "")
        gate = asyncio.Semaphore(self.settings.reap_concurrency)
        batch = self.settings.reap_batch_size
        for due in (self.store.due_hard, self.store.due_idle):
            skipped = 0
            while True:
                ids = await due(now, batch, skipped)
                if not ids:
                    break
                records = await self.store.get_many(ids)
                outcomes = await asyncio.gather(
                    *(self._reap(gate, r, now, report) for r in records if r is not None)
                )
                report.examined += len(ids)
                gone = sum(outcomes) + records.count(None)
                skipped += len(ids) - gone
                if len(ids) < batch:
                    break
        report.skipped = (
            report.examined - len(report.hibernated) - sum(len(v) for v in report.ended.values())
        )
        report.duration_ms = (time.perf_counter() - began) * 1000
        if report.hibernated or report.ended or report.failed:
            log.info(
                "reaper pass",
                extra={
                    "hibernated": len(report.hibernated),
                    "ended": {k: len(v) for k, v in report.ended.items()},
                    "failed": len(report.failed),
                    "duration_ms": round(report.duration_ms, 1),
                },
            )
        return report

    async def _reap(
        self, gate: asyncio.Semaphore, record: SessionRecord, now: int, report: ReapReport
    ) -> bool:
        """Apply the verdict to one session; True when it left the due set."""
        action = verdict(record, now, self.settings.reap_action)
        if action is None:
            return False
        session_id = record.session_id
        async with gate:
            try:
                if action == Action.HIBERNATE:
                    done = await self.sessions.hibernate(session_id, only_if_idle_due_at=now)
                else:
                    reason = _REASONS[action]
                    done = await self.sessions.end(
                        session_id,
                        reason,
                        allowed=(record.status,),
                        only_if_idle_due_at=None if action == Action.END_MAX_AGE else now,
                    )
            except KatoError as exc:
                report.failed[session_id] = f"{exc.code}: {exc.message}"
                log.warning(
                    "reap failed",
                    extra={"session_id": session_id, "action": action, "error": exc.message},
                )
                return False
        if not done:
            return False
        metric_reason = _METRIC_REASONS[action]
        self.metrics.reaped.labels(metric_reason).inc()
        if action == Action.HIBERNATE:
            report.hibernated.append(session_id)
        else:
            report.ended.setdefault(_REASONS[action], []).append(session_id)
        log.info("session reaped", extra={"session_id": session_id, "reason": metric_reason})
        return True
