"""Time: one ``Clock`` for "now" in milliseconds, so tests move time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ("Clock", "SystemClock")


class Clock(Protocol):
    """Where "now" comes from."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock (``time.time``), shared by every manager replica via NTP."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        return time.time_ns() // 1_000_000
