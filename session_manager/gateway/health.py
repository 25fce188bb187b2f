"""Health of the static processors, checked on a timer so that requests never wait on a dead one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import msgspec

from session_manager.clock import iso
from session_manager.errors import ProcessorTimeout, ProcessorUnavailable
from session_manager.gateway.registry import StaticProcessor
from session_manager.processor_client import ProcessorClient

__all__ = ("HealthMonitor", "ProcessorHealth")

log = logging.getLogger(__name__)


class ProcessorHealth(msgspec.Struct, kw_only=True):
    """What the last check of one processor found."""

    id: str
    name: str
    url: str
    healthy: bool = False
    checked_at: str | None = None
    """When it was last checked (ISO 8601, like every timestamp in a body)."""
    latency_ms: float | None = None
    error: str | None = None


class HealthMonitor:
    """Checks each processor's ``/health`` on a timer; a failed request marks it at once."""

    def __init__(
        self,
        processors: Sequence[StaticProcessor],
        client: ProcessorClient,
        *,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._client = client
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._state = {p.id: ProcessorHealth(id=p.id, name=p.name, url=p.url) for p in processors}
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, processor_id: str) -> bool:
        return processor_id in self._state

    def get(self, processor_id: str) -> ProcessorHealth | None:
        """The health record of one processor, or None when it is not registered."""
        return self._state.get(processor_id)

    def all(self) -> list[ProcessorHealth]:
        """Every record, in registration order."""
        return list(self._state.values())

    def healthy_ids(self) -> list[str]:
        """Ids of the processors whose last check passed."""
        return [h.id for h in self._state.values() if h.healthy]

    def mark_failed(self, processor_id: str, error: str) -> None:
        """A proxied request could not reach the processor: stop sending until a check passes."""
        record = self._state.get(processor_id)
        if record is not None and record.healthy:
            log.warning("processor %s marked unhealthy: %s", processor_id, error)
            record.healthy, record.error = False, error

    async def check_all(self) -> None:
        """One round of checks, all processors concurrently."""
        await asyncio.gather(*(self._check(record) for record in self._state.values()))

    async def _check(self, record: ProcessorHealth) -> None:
        started = time.perf_counter()
        healthy, error = True, None
        try:
            await self._client.health(record.url, timeout_s=self._timeout_s)
        except (ProcessorUnavailable, ProcessorTimeout) as exc:
            healthy, error = False, exc.message
        if healthy != record.healthy:
            log.info("processor %s is now %s", record.id, "healthy" if healthy else "unhealthy")
        record.healthy, record.error = healthy, error
        record.checked_at = iso(time.time_ns() // 1_000_000)
        record.latency_ms = (time.perf_counter() - started) * 1000

    async def start(self) -> None:
        """Check once now, then keep checking in the background."""
        await self.check_all()
        self._task = asyncio.create_task(self._run(), name="static-processor-health")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check_all()
            except Exception:  # a bug here must not stop future checks
                log.exception("health round failed")

    async def stop(self) -> None:
        """Stop the timer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
