"""Time: one ``Clock`` for "now" in milliseconds, so tests move time instead of sleeping."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

__all__ = ("Clock", "SystemClock", "iso")


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


def iso(ms: int | None) -> str | None:
    """Epoch ms as an ISO-8601 UTC timestamp: the one format of every timestamp in a body."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")
