"""ActivityTracker: touches coalesced per session and interval, failures logged, memory bounded."""

from __future__ import annotations

import asyncio
import logging

import pytest

from session_manager.errors import StoreUnavailable
from session_manager.proxy import ActivityTracker


async def test_marks_while_a_touch_is_in_flight_add_no_second_touch() -> None:
    tracker, release, touched = ActivityTracker(interval_ms=0), asyncio.Event(), []

    async def touch(session_id: str) -> None:
        touched.append(session_id)
        await release.wait()

    for _ in range(5):
        tracker.mark("s1", touch, 0)
    tracker.mark("s2", touch, 0)
    await asyncio.sleep(0)
    assert touched == ["s1", "s2"]
    release.set()
    await tracker.drain()
    tracker.mark("s1", touch, 0)
    await tracker.drain()
    assert touched == ["s1", "s2", "s1"]


async def test_failed_touch_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    tracker = ActivityTracker()

    async def touch(session_id: str) -> None:
        raise StoreUnavailable("redis is down")

    with caplog.at_level(logging.WARNING):
        tracker.mark("s1", touch, 0)
        await tracker.drain()
    assert "idle deadline not moved" in caplog.text
    tracker.mark("s1", touch, 1000)  # the failed one no longer counts as in flight
    await tracker.drain()
    assert caplog.text.count("idle deadline not moved") == 2


async def test_a_session_is_touched_at_most_once_per_interval() -> None:
    tracker, touched = ActivityTracker(interval_ms=1000), []

    async def touch(session_id: str) -> None:
        touched.append(session_id)

    for at in (0, 300, 999, 1000, 1500, 1999, 2000, 2001, 5000):
        tracker.mark("s1", touch, at)
        tracker.mark("s2", touch, at + 500)
        await tracker.drain()
    assert touched == ["s1", "s2", "s1", "s2", "s1", "s2", "s1", "s2"]


async def test_remembered_touch_times_stay_bounded() -> None:
    tracker = ActivityTracker(interval_ms=1000)

    async def touch(session_id: str) -> None:
        return None

    for i in range(25_000):
        tracker.mark(f"s{i}", touch, i)  # 1 ms apart: at most ~1,000 can still matter
    await tracker.drain()
    assert len(tracker._last) <= 10_001
