"""Hibernate, restore and recover: a session's state moves between its processor and Redis.

``hibernate`` fences the processor (``POST /fence``: requests admitted before it finish, later
ones answer 503 ``PROCESSOR_FENCED`` and the proxy resends them after the restore; open
WebSockets close with 1012), saves its ``/state`` as a snapshot and removes the processor;
``restore`` (a request for a ``hibernated`` session) and ``recover`` (the reconciler, for a
``ready`` session whose processor vanished) start a new one and load the snapshot into it.
"""

from __future__ import annotations

import logging
import time

from session_manager.errors import KatoError
from session_manager.models import ProcessorHandle, SessionRecord, SessionStatus
from session_manager.processor_client import ProcessorClient
from session_manager.sessions.lifecycle import Lifecycle

__all__ = ("Hibernation",)

log = logging.getLogger(__name__)


class Hibernation:
    """Moves sessions to and from ``hibernated`` through ``lifecycle``'s transitions."""

    def __init__(self, lifecycle: Lifecycle, processors: ProcessorClient) -> None:
        self._lifecycle = lifecycle
        self._processors = processors
        self._store = lifecycle.store
        self._settings = lifecycle.settings
        self._clock = lifecycle.clock
        self._metrics = lifecycle.metrics

    async def hibernate(self, session_id: str, *, only_if_idle_due_at: int | None = None) -> bool:
        """Save the processor's state to Redis, remove the processor, mark ``hibernated``.

        With ``only_if_idle_due_at`` nothing happens unless the idle deadline is still due then
        (a request that moved it wins). Returns whether the session was hibernated. A processor
        whose state cannot be read or saved is unfenced and left running and ``ready`` (the
        error, e.g. ``ProcessorUnavailable``, is raised).
        """
        transition = self._lifecycle.transition
        result = await transition(
            session_id,
            allowed=[SessionStatus.READY],
            to=SessionStatus.HIBERNATING,
            only_if_idle_due_at=only_if_idle_due_at,
        )
        if not result.ok:
            return False
        record = await self._store.get(session_id)
        handle = record.handle if record is not None else None
        if record is None or handle is None:
            return False
        try:
            # The fence is the barrier: after it the state is final, so one read is exact.
            if not await self._processors.fence(handle.endpoint):
                log.warning(
                    "processor has no fence (image older than the manager): hibernating"
                    " without the barrier; requests racing it may be lost",
                    extra={"session_id": session_id},
                )
            state = await self._processors.get_state(handle.endpoint)
            await self._store.save_snapshot(session_id, state)
        except KatoError:
            await self._back_to_ready(session_id, handle)
            raise
        await self._lifecycle.stop(handle)
        done = await transition(
            session_id,
            allowed=[SessionStatus.HIBERNATING],
            to=SessionStatus.HIBERNATED,
            fields={"backend": "", "ref": "", "endpoint": ""},
            idle_deadline=self._clock.now_ms() + self._settings.hibernate_ttl_s * 1000,
        )
        if done.ok:
            self._metrics.hibernations.inc()
            log.info("session hibernated", extra={"session_id": session_id})
        return done.ok

    async def _back_to_ready(self, session_id: str, handle: ProcessorHandle) -> None:
        """A hibernation that failed: lift the fence (if it went up) and serve again."""
        try:
            await self._processors.unfence(handle.endpoint)
        except KatoError:
            log.warning(
                "could not lift the fence after a failed hibernation",
                extra={"session_id": session_id},
                exc_info=True,
            )
        await self._lifecycle.transition(
            session_id, allowed=[SessionStatus.HIBERNATING], to=SessionStatus.READY
        )

    async def restore(self, record: SessionRecord) -> SessionRecord | None:
        """Start a new processor for a ``hibernated`` session and load its snapshot into it.

        Returns the ``ready`` record, or ``None`` when another task is already restoring it.
        On failure the session goes back to ``hibernated`` (snapshot kept) and the error is
        raised.
        """
        now = self._clock.now_ms()
        began = time.perf_counter()
        slot = now + int((self._settings.start_timeout_s + self._settings.stop_timeout_s) * 1000)
        claimed = await self._lifecycle.transition(
            record.session_id,
            allowed=[SessionStatus.HIBERNATED],
            to=SessionStatus.STARTING,
            start_slot=slot,
        )
        if not claimed.ok:
            return None
        return await self._restart(record, began)

    async def recover(self, record: SessionRecord) -> SessionRecord | None:
        """Replace a ``ready`` session's vanished processor, from its snapshot if any.

        For the reconciler. Returns the ready record, or ``None`` when the status changed
        meanwhile.
        """
        claimed = await self._lifecycle.transition(
            record.session_id,
            allowed=[SessionStatus.READY],
            to=SessionStatus.STARTING,
            fields={"backend": "", "ref": "", "endpoint": ""},
            idle_deadline="remove",
            start_slot=self._clock.now_ms() + int(self._settings.start_timeout_s * 1000),
        )
        if not claimed.ok:
            return None
        return await self._restart(record, time.perf_counter())

    async def _restart(self, record: SessionRecord, began: float) -> SessionRecord:
        lifecycle = self._lifecycle
        handle: ProcessorHandle | None = None
        try:
            handle = await lifecycle.launch(record)
            snapshot = await self._store.load_snapshot(record.session_id)
            if snapshot is not None:
                await self._processors.put_state(handle.endpoint, snapshot)
        except KatoError:
            if handle is not None:
                await lifecycle.stop(handle)
            # Back to hibernated (snapshot kept), on the usual hibernation clock.
            await lifecycle.transition(
                record.session_id,
                allowed=[SessionStatus.STARTING],
                to=SessionStatus.HIBERNATED,
                idle_deadline=self._clock.now_ms() + self._settings.hibernate_ttl_s * 1000,
                start_slot="remove",
            )
            raise
        ready = await lifecycle.mark_ready(record, handle)
        if snapshot is not None:
            await self._store.delete_snapshot(record.session_id)
        self._metrics.restores.inc()
        self._metrics.restore_duration.observe(time.perf_counter() - began)
        log.info("session restored", extra={"session_id": record.session_id})
        return ready
