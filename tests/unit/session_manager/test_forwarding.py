"""Pure parts of the forwarder: close-code mapping, request ids, deadline-touch coalescing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from session_manager import log as log_context
from session_manager.errors import StoreUnavailable
from session_manager.forwarding import ActivityTracker, request_id_from, websocket_close_code


@pytest.mark.parametrize(
    ("code", "abnormal", "sent"),
    [
        (1000, 1014, 1000),
        (4321, 1014, 4321),
        (1011, 1014, 1011),
        (None, 1014, 1000),
        (1005, 1014, 1000),
        (1006, 1014, 1014),
        (1006, 1001, 1001),
        (1015, 1014, 1014),
    ],
)
def test_close_codes_that_may_not_be_sent_are_replaced(
    code: int | None, abnormal: int, sent: int
) -> None:
    assert websocket_close_code(code, "why", abnormal=abnormal) == (sent, "why")


def test_close_reason_is_cut_to_123_bytes_on_a_character_boundary() -> None:
    _, reason = websocket_close_code(4000, "é" * 100)
    assert len(reason.encode()) <= 123
    assert reason == "é" * 61


def test_request_id_from_the_client_is_kept() -> None:
    assert request_id_from([(b"x-request-id", b"abc-123:x.y_z")]) == "abc-123:x.y_z"


@pytest.mark.parametrize("value", [b"", b"has space", b"x" * 129, b"new\nline"])
def test_request_id_that_is_not_a_plain_token_is_replaced(value: bytes) -> None:
    generated = request_id_from([(b"x-request-id", value)])
    assert generated != value.decode()
    assert len(generated) == 32


def test_request_id_is_generated_when_missing() -> None:
    assert request_id_from([]) != request_id_from([])


def test_request_id_of_the_logging_context_wins() -> None:
    token = log_context.request_id.set("from-the-middleware")
    try:
        assert request_id_from([(b"x-request-id", b"other")]) == "from-the-middleware"
    finally:
        log_context.request_id.reset(token)


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
