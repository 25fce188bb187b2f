"""Close-code mapping of the WebSocket bridge."""

from __future__ import annotations

import pytest

from session_manager.proxy import websocket_close_code


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
