"""Time in tests: a clock the test moves, and a bounded wait for what only real time brings.

Deadlines, grace periods and TTLs that the manager reads from its ``Clock`` are tested by
moving a ``ManualClock``; ``wait_for`` is for what really takes time (a process dying or
starting, a timer firing, a Redis key expiring).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ("ManualClock", "wait_for")


class ManualClock:
    """A clock the test moves by hand (the ``Clock`` protocol: ``now_ms``)."""

    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.ms = now_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


async def wait_for(
    predicate: Callable[[], Awaitable[object]], timeout_s: float, every_s: float = 0.1
) -> bool:
    """Poll ``predicate`` until it is truthy (True) or ``timeout_s`` of real time pass (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(every_s)
    return False
