"""Restores and recoveries wait for a start slot, in one line for the whole deployment.

Creates and restarts share ``MAX_CONCURRENT_STARTS``. A create that finds every slot taken is
refused at once (429: the client has nothing yet and can retry), but a request for a
hibernated session, or the reconciler replacing a lost processor, waits here: it joins the
deployment's line in Redis (``store.start_queue``) at its arrival time and polls until it is
among the oldest waiters while a slot is free, up to ``START_TIMEOUT_S``, then ``StartsBusy``
(503, ``Retry-After``). Waiting restores go before new creates (``reserve.lua`` counts them as
using a slot), since a user is already waiting on an existing session.

Why a Redis line and not a local queue: slots are global across replicas, and a local
``asyncio`` queue would serve each replica's waiters in order but let a busy replica's
newcomers overtake another replica's old waiters; the Redis zset orders every waiter by
arrival. A waiter's lease (renewed at each poll) drops it from the line soon after its manager
dies, and a claimed slot expires like a create's, so a crash leaks neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from session_manager.clock import Clock
from session_manager.errors import StartsBusy, StoreUnavailable
from session_manager.metrics import Metrics
from session_manager.models import SessionStatus
from session_manager.settings import Settings
from session_manager.store import SessionStore

__all__ = ("StartGate",)

log = logging.getLogger(__name__)

_POLL_S = 0.05
"""How often a waiter asks for its turn (also renews its lease in the line)."""


class StartGate:
    """``wait_for_slot``: a start slot for an existing session, in arrival order."""

    def __init__(
        self, *, store: SessionStore, settings: Settings, clock: Clock, metrics: Metrics
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._metrics = metrics

    async def wait_for_slot(
        self,
        session_id: str,
        *,
        kind: str,
        allowed: Iterable[SessionStatus],
        slot_s: float,
        only_if_ref: str | None = None,
    ) -> int | None:
        """Wait in line, then hold a slot for ``slot_s``; the slot's deadline in ms.

        ``None`` when the session left ``allowed`` (or, with ``only_if_ref``, the processor
        it had) meanwhile, or another task (here or on another replica) is starting it: the
        caller does not start it. A recovery passes the lost processor's ref: one that came too
        late finds the session ready again, on the processor the first one started. The caller
        moves the session to ``starting`` with this deadline as its start slot, or
        ``release``s it.
        Raises ``StartsBusy`` after ``START_TIMEOUT_S`` in line.
        """
        statuses = list(allowed)
        arrival = self._clock.now_ms()
        began = time.monotonic()
        give_up = began + self._settings.start_timeout_s
        outcome = "abandoned"
        self._metrics.start_queue_waiting.inc()
        try:
            while True:
                claim, deadline = await self._store.claim_start(
                    session_id,
                    allowed=statuses,
                    arrival_ms=arrival,
                    slot_ms=int(slot_s * 1000),
                    max_starts=self._settings.max_concurrent_starts,
                    only_if_ref=only_if_ref,
                )
                if claim.verdict != "queued":
                    outcome = claim.verdict
                    return deadline if claim.verdict == "claimed" else None
                if time.monotonic() >= give_up:
                    outcome = "timeout"
                    raise StartsBusy(
                        "no start slot within the start timeout (MAX_CONCURRENT_STARTS="
                        f"{self._settings.max_concurrent_starts})",
                        session_id=session_id,
                        ahead=claim.ahead,
                    )
                await asyncio.sleep(_POLL_S)
        finally:
            waited = time.monotonic() - began
            self._metrics.start_queue_waiting.dec()
            self._metrics.start_wait.labels(kind=kind, outcome=outcome).observe(waited)
            if outcome in ("timeout", "abandoned"):
                # Out of the line now rather than when the lease runs out: a dead head would
                # keep a free slot from the waiters behind it.
                with contextlib.suppress(StoreUnavailable):
                    await self._store.leave_start_queue(session_id)
            if waited >= _POLL_S:
                log.info(
                    "start slot wait",
                    extra={"session_id": session_id, "kind": kind, "outcome": outcome},
                )

    async def release(self, session_id: str) -> None:
        """Give back a slot that was claimed but not used (the status changed first)."""
        await self._store.release_start(session_id)
