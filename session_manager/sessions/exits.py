"""Why a session's processor went away, when its owner should hear of it.

Today one cause is told: the processor reached its memory limit (``PROCESSOR_MEMORY_LIMIT``)
and exited. The session records it (``last_event``, ``last_event_at``, ``out_of_memory_count``
in its Redis hash, shown by ``GET /admin/sessions/{id}``), ``/metrics`` counts it
(``kato_processor_out_of_memory_total``), the log says it, and the request that was in flight
is answered ``507 PROCESSOR_OUT_OF_MEMORY`` instead of being resent.
"""

from __future__ import annotations

import logging

from session_manager.backends.base import OUT_OF_MEMORY
from session_manager.errors import KatoError, ProcessorOutOfMemory
from session_manager.models import SessionRecord
from session_manager.sessions.lifecycle import Lifecycle

__all__ = ("PROCESSOR_OUT_OF_MEMORY", "ProcessorExits")

log = logging.getLogger(__name__)

PROCESSOR_OUT_OF_MEMORY = "processor_out_of_memory"
"""The session event (``last_event``) of a processor that exited at its memory limit."""


class ProcessorExits:
    """Asks the backend why a processor stopped; records, counts and logs what matters."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._backend = lifecycle.backend
        self._settings = lifecycle.settings
        self._metrics = lifecycle.metrics
        self._clock = lifecycle.clock

    async def event(self, record: SessionRecord) -> str | None:
        """``PROCESSOR_OUT_OF_MEMORY`` when ``record``'s processor is gone for that; else None."""
        handle = record.handle
        if handle is None:
            return None
        try:
            cause = await self._backend.exit_cause(handle, record.processor_id)
        except KatoError:  # the backend cannot be asked: the cause stays unknown
            return None
        return PROCESSOR_OUT_OF_MEMORY if cause == OUT_OF_MEMORY else None

    def fields(self, record: SessionRecord, event: str | None) -> dict[str, str | int]:
        """The record's hash fields that remember ``event`` (none for no event)."""
        if event is None:
            return {}
        return {
            "last_event": event,
            "last_event_at": self._clock.now_ms(),
            "out_of_memory_count": record.out_of_memory_count + 1,
        }

    def noted(self, record: SessionRecord, event: str | None) -> None:
        """Count and log ``event`` once the session's change was made (by one task only)."""
        if event is None:
            return
        self._metrics.processor_out_of_memory.inc()
        log.warning(
            "processor exited at its memory limit",
            extra={
                "session_id": record.session_id,
                "limit": self._settings.processor_memory_limit,
                "event": event,
            },
        )

    def error(self, record: SessionRecord, *, recovered: bool) -> ProcessorOutOfMemory:
        """What the request in flight is answered (it is not resent)."""
        after = "recovered from its checkpoint and journal" if recovered else "not recoverable"
        return ProcessorOutOfMemory(
            f"the session's processor reached its memory limit "
            f"(PROCESSOR_MEMORY_LIMIT={self._settings.processor_memory_limit}) while this request"
            f" was in flight and exited; the request was not acknowledged; the session is {after}",
            session_id=record.session_id,
            limit=self._settings.processor_memory_limit,
            recovered=recovered,
        )
