"""Idle-deadline moves for proxied traffic: the manager's only touch throttle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ("ActivityTracker", "Touch")

log = logging.getLogger(__name__)

Touch = Callable[[str], Awaitable[None]]
"""Moves one session's idle deadline (``Sessions.touch``: a plain store write)."""

_TOUCH_INTERVAL_MS = 1000
"""A session's idle deadline is written at most once a second, however busy it is."""
_TRACKED_SESSIONS = 10_000
"""Past this many remembered touch times, the ones old enough to no longer matter are dropped."""


class ActivityTracker:
    """Moves idle deadlines off the request path: at most one touch per session per interval.

    The touch runs in the background, never on the request path. Activity within
    ``interval_ms`` of the session's last touch (by the app's clock), or while a touch is in
    flight, adds nothing: a busy session costs one Redis write per interval, and its idle
    deadline trails its last activity by less than the interval.
    """

    def __init__(self, interval_ms: int = _TOUCH_INTERVAL_MS) -> None:
        self._interval_ms = interval_ms
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, int] = {}

    def mark(self, session_id: str, touch: Touch, now_ms: int) -> None:
        """Note activity on ``session_id`` at ``now_ms``; ``touch`` runs if it is due."""
        last = self._last.get(session_id)
        if session_id in self._in_flight or (
            last is not None and now_ms - last < self._interval_ms
        ):
            return
        self._last[session_id] = now_ms
        if len(self._last) > _TRACKED_SESSIONS:
            self._last = {s: t for s, t in self._last.items() if now_ms - t < self._interval_ms}
        self._in_flight[session_id] = asyncio.create_task(self._touch(session_id, touch))

    async def _touch(self, session_id: str, touch: Touch) -> None:
        try:
            await touch(session_id)
        except Exception:
            log.warning("idle deadline not moved", extra={"session_id": session_id}, exc_info=True)
        finally:
            del self._in_flight[session_id]

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Let the touches in flight finish (bounded), e.g. before shutdown or in tests."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=timeout_s)
