"""Hibernate, restore and recover: a session's state moves between its processor and Redis.

``hibernate`` saves the processor's ``/state`` as a snapshot and removes the processor;
``restore`` (a request for a ``hibernated`` session) and ``recover`` (the reconciler, for a
``ready`` session whose processor vanished) start a new one and load the snapshot into it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from session_manager.errors import KatoError
from session_manager.models import ProcessorHandle, SessionRecord, SessionStatus
from session_manager.processor_client import ProcessorClient
from session_manager.sessions.lifecycle import Lifecycle
from session_manager.sessions.start_gate import StartGate

__all__ = ("Hibernation",)

log = logging.getLogger(__name__)

_SETTLE_S = 0.02
_SETTLE_ATTEMPTS = 5


class Hibernation:
    """Moves sessions to and from ``hibernated`` through ``lifecycle``'s transitions."""

    def __init__(self, lifecycle: Lifecycle, processors: ProcessorClient) -> None:
        self._lifecycle = lifecycle
        self._processors = processors
        self._store = lifecycle.store
        self._settings = lifecycle.settings
        self._clock = lifecycle.clock
        self._metrics = lifecycle.metrics
        self._starts = StartGate(
            store=self._store, settings=self._settings, clock=self._clock, metrics=self._metrics
        )

    async def hibernate(self, session_id: str, *, only_if_idle_due_at: int | None = None) -> bool:
        """Save the processor's state to Redis, remove the processor, mark ``hibernated``.

        With ``only_if_idle_due_at`` nothing happens unless the idle deadline is still due then
        (a request that moved it wins). Returns whether the session was hibernated. A processor
        whose state cannot be read is left running and ``ready`` (``ProcessorUnavailable``).
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
            state = await self._settled_state(handle)
        except KatoError:
            await transition(
                session_id, allowed=[SessionStatus.HIBERNATING], to=SessionStatus.READY
            )
            raise
        await self._store.save_snapshot(session_id, state)
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

    async def _settled_state(self, handle: ProcessorHandle) -> bytes:
        """The processor's state once requests already on their way have landed.

        Requests routed before the session left ``ready`` may still be in flight; new ones
        wait. Two equal snapshots 20 ms apart mean nothing more is arriving.
        """
        state = await self._processors.get_state(handle.endpoint)
        for _ in range(_SETTLE_ATTEMPTS):
            await asyncio.sleep(_SETTLE_S)
            again = await self._processors.get_state(handle.endpoint)
            if again == state:
                break
            state = again
        return state

    async def restore(self, record: SessionRecord) -> SessionRecord | None:
        """Start a new processor for a ``hibernated`` session and load its snapshot into it.

        Waits its turn for a start slot (``MAX_CONCURRENT_STARTS``, shared with creates).
        Returns the ``ready`` record, or ``None`` when another task is already restoring it.
        On failure the session goes back to ``hibernated`` (snapshot kept) and the error is
        raised; ``StartsBusy`` (503) when no slot came within the start timeout.
        """
        claimed = await self._claim_start(
            record.session_id,
            kind="restore",
            slot_s=self._settings.start_timeout_s + self._settings.stop_timeout_s,
            allowed=[SessionStatus.HIBERNATED],
        )
        if not claimed:
            return None
        return await self._restart(record, time.perf_counter())

    async def recover(self, record: SessionRecord) -> SessionRecord | None:
        """Replace a ``ready`` session's vanished processor, from its snapshot if any.

        For the reconciler; waits its turn for a start slot like a restore. Returns the ready
        record, or ``None`` when the status changed meanwhile.
        """
        claimed = await self._claim_start(
            record.session_id,
            kind="recover",
            slot_s=self._settings.start_timeout_s,
            allowed=[SessionStatus.READY],
            fields={"backend": "", "ref": "", "endpoint": ""},
            idle_deadline="remove",
        )
        if not claimed:
            return None
        return await self._restart(record, time.perf_counter())

    async def _claim_start(
        self, session_id: str, *, kind: str, slot_s: float, **change: Any
    ) -> bool:
        """Wait in line for a start slot (``StartGate``), then CAS the session to ``starting``.

        False when the session left ``change["allowed"]`` or another task is starting it.
        Raises ``StartsBusy`` (503) when no slot came within the start timeout.
        """
        slot = await self._starts.wait_for_slot(
            session_id, kind=kind, allowed=change["allowed"], slot_s=slot_s
        )
        if slot is None:
            return False
        claimed = await self._lifecycle.transition(
            session_id, to=SessionStatus.STARTING, start_slot=slot, **change
        )
        if not claimed.ok:
            await self._starts.release(session_id)
        return claimed.ok

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
