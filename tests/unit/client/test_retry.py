"""Which answers the client sends again, and after how long."""

from __future__ import annotations

from kato_sessions import Retry
from kato_sessions._calls import retry_delay
from kato_sessions.errors import error_for

_BODY = b'{"error": {"code": "X", "message": "", "details": {}}, "status": 0}'


def test_429_and_503_with_retry_after_are_retried_after_it() -> None:
    assert retry_delay(error_for(429, _BODY, "2"), 0.0, Retry()) == 2
    assert retry_delay(error_for(503, _BODY, "1"), 0.0, Retry()) == 1


def test_nothing_else_is_retried() -> None:
    # without Retry-After the server says nothing about whether a retry may work
    assert retry_delay(error_for(503, _BODY), 0.0, Retry()) is None
    # 502/504 may have been applied: never resent
    assert retry_delay(error_for(502, _BODY, "1"), 0.0, Retry()) is None
    assert retry_delay(error_for(504, _BODY, "1"), 0.0, Retry()) is None


def test_the_waits_stop_at_the_budget() -> None:
    assert retry_delay(error_for(429, _BODY, "5"), 56.0, Retry(timeout_s=60)) is None
    assert retry_delay(error_for(429, _BODY, "5"), 55.0, Retry(timeout_s=60)) == 5
    assert retry_delay(error_for(429, _BODY, "1"), 0.0, Retry(timeout_s=0)) is None
