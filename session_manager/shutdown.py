"""What an orderly stop does to the deployment's sessions: keep, hibernate or end them.

``SHUTDOWN_ACTION`` (see ``Settings.effective_shutdown_action``) is applied once, by the
lifespan, after the timers stop and before the backend and Redis are closed:

* ``keep``: processors keep running; the next manager adopts them (a rolling restart).
* ``hibernate``: every ``ready`` session's state goes to Redis and its processor is stopped;
  the first request after a restart restores it.
* ``delete``: every live session ends with reason ``manager_stopped`` (410 after a restart).

Only the last live manager instance of the deployment acts (``store.replicas``): stopping one
replica leaves the sessions to the others. The work runs ``REAP_CONCURRENCY`` at a time; none
begins after ``SHUTDOWN_TIMEOUT_S``, and what did not begin is left running (logged) for the next
manager to adopt. A hibernation or end that did begin is not cancelled: cut half-way it would
leave a session neither ready nor hibernated; each one is bounded by the processor timeouts.
A manager killed outright (``kill -9``) runs none of this: the next one adopts or recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from session_manager.errors import KatoError
from session_manager.models import EndReason, SessionStatus
from session_manager.sessions import Sessions
from session_manager.settings import Settings, ShutdownAction
from session_manager.store import SessionStore

__all__ = ("Shutdown", "ShutdownReport")

log = logging.getLogger(__name__)

_PROGRESS_S = 1.0
"""How often progress is logged while sessions are being hibernated or ended."""

_TARGETS: dict[ShutdownAction, tuple[SessionStatus, ...]] = {
    "keep": (),
    "hibernate": (SessionStatus.READY,),
    "delete": (SessionStatus.READY, SessionStatus.HIBERNATED),
}
"""The statuses each action applies to (hibernated sessions have no processor to stop)."""


class ShutdownReport(msgspec.Struct, kw_only=True):
    """What the stop did; ``acted`` is False when sessions were left as they were."""

    action: ShutdownAction
    acted: bool = False
    other_replicas: int = 0
    done: list[str] = msgspec.field(default_factory=list)
    failed: dict[str, str] = msgspec.field(default_factory=dict)
    left: list[str] = msgspec.field(default_factory=list)
    duration_ms: float = 0.0


class Shutdown:
    """Applies the shutdown action once, for the manager instance ``instance_id``."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: SessionStore,
        sessions: Sessions,
        instance_id: str,
        replica_stale_ms: int,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sessions = sessions
        self.instance_id = instance_id
        self.replica_stale_ms = replica_stale_ms

    async def run(self) -> ShutdownReport:
        """Leave the replica registry; if no other instance is alive, apply the action."""
        began = time.monotonic()
        deadline = began + self.settings.shutdown_timeout_s
        action = self.settings.effective_shutdown_action
        report = ShutdownReport(action=action)
        try:
            report.other_replicas = await self.store.replica_leave(
                self.instance_id, self.replica_stale_ms
            )
        except KatoError as exc:
            log.warning(
                "manager stopping: replicas unknown, sessions keep running",
                extra={"shutdown_action": action, "error": exc.message},
            )
            return report
        if action == "keep" or report.other_replicas:
            log.info(
                "manager stopping: sessions keep running",
                extra={"shutdown_action": action, "other_replicas": report.other_replicas},
            )
            return report
        report.acted = True
        # This instance's starts in flight become ``ready`` first, so that they are included.
        await self.sessions.wait_for_starts(deadline - time.monotonic())
        try:
            targets = await self._targets(_TARGETS[action])
        except KatoError as exc:
            log.warning(
                "manager stopping: sessions unreadable, they keep running",
                extra={"shutdown_action": action, "error": exc.message},
            )
            return report
        log.info(
            "manager stopping: applying the shutdown action",
            extra={"shutdown_action": action, "sessions": len(targets)},
        )
        await self._apply(action, targets, deadline, report)
        report.duration_ms = (time.monotonic() - began) * 1000
        summary = {
            "shutdown_action": action,
            "done": len(report.done),
            "failed": len(report.failed),
            "duration_ms": round(report.duration_ms, 1),
        }
        if report.left:
            log.warning(
                "shutdown timeout: sessions left running for the next manager",
                extra={**summary, "left_running": report.left},
            )
        else:
            log.info("manager stopping: shutdown action done", extra=summary)
        return report

    async def _targets(self, statuses: tuple[SessionStatus, ...]) -> list[str]:
        """The ids to act on, read before any changes (a change moves an id between indexes)."""
        ids: list[str] = []
        for status in statuses:
            ids += [session_id async for session_id in self.store.iter_status(status)]
        return ids

    async def _apply(
        self, action: ShutdownAction, targets: list[str], deadline: float, report: ShutdownReport
    ) -> None:
        """Run the action on every target, bounded in concurrency and in when work may begin."""
        gate = asyncio.Semaphore(self.settings.reap_concurrency)
        begun: set[str] = set()

        async def one(session_id: str) -> None:
            async with gate:
                begun.add(session_id)
                await self._act(action, session_id, report)

        tasks = {asyncio.create_task(one(session_id)): session_id for session_id in targets}
        pending = set(tasks)
        while pending:
            timeout = max(0.0, min(_PROGRESS_S, deadline - time.monotonic()))
            _, pending = await asyncio.wait(pending, timeout=timeout)
            if pending and time.monotonic() >= deadline:
                waiting = {task for task in pending if tasks[task] not in begun}
                for task in waiting:
                    task.cancel()  # still waiting for a slot: nothing was done to the session
                report.left += sorted(tasks[task] for task in waiting)
                pending -= waiting
                await asyncio.gather(*waiting, return_exceptions=True)
                deadline = float("inf")  # from here on, only progress of the work begun
            if pending:
                log.info(
                    "shutdown progress",
                    extra={
                        "shutdown_action": action,
                        "done": len(report.done),
                        "failed": len(report.failed),
                        "left": len(pending),
                    },
                )

    async def _act(self, action: ShutdownAction, session_id: str, report: ShutdownReport) -> None:
        """Hibernate or end one session; a failure leaves it as it is (still running)."""
        try:
            if action == "hibernate":
                changed = await self.sessions.hibernate(session_id)
            else:
                changed = await self.sessions.end(
                    session_id,
                    EndReason.MANAGER_STOPPED,
                    allowed=(SessionStatus.READY, SessionStatus.HIBERNATED),
                )
        except KatoError as exc:
            report.failed[session_id] = f"{exc.code}: {exc.message}"
            log.warning(
                "shutdown action failed: session left as it was",
                extra={"session_id": session_id, "shutdown_action": action, "error": exc.message},
            )
            return
        except Exception as exc:  # a bug must not stop the other sessions' shutdown
            report.failed[session_id] = repr(exc)
            log.exception("shutdown action crashed", extra={"session_id": session_id})
            return
        if changed:
            report.done.append(session_id)
