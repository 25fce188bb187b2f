"""JSON log lines carry the request's ids and the ``extra`` fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from session_manager.log import (
    JsonFormatter,
    RedactSecrets,
    configure_logging,
    request_id,
    session_id,
)


def test_a_log_line_is_json_with_context_ids_and_extra_fields() -> None:
    record = logging.LogRecord(
        "session_manager.x", logging.INFO, "f.py", 1, "session reaped", None, None
    )
    record.reason = "idle"
    tokens = request_id.set("req-1"), session_id.set("s-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(tokens[0])
        session_id.reset(tokens[1])
    entry = json.loads(line)
    assert entry["message"] == "session reaped"
    assert entry["level"] == "INFO"
    assert entry["request_id"] == "req-1"
    assert entry["session_id"] == "s-1"
    assert entry["reason"] == "idle"
    assert entry["ts"].endswith("Z")


def test_without_a_request_the_ids_are_left_out() -> None:
    record = logging.LogRecord("x", logging.WARNING, "f.py", 1, "manager started", None, None)
    entry = json.loads(JsonFormatter().format(record))
    assert "request_id" not in entry
    assert "session_id" not in entry


@pytest.fixture(name="restore_logging")
def fx_restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    names = ("httpx", "apscheduler", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in names})
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_scheduler_chatter_is_kept_out_at_info_but_not_at_debug() -> None:
    configure_logging("INFO")
    assert not logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.INFO)
    assert logging.getLogger("apscheduler.scheduler").isEnabledFor(logging.WARNING)
    assert logging.getLogger("session_manager.scheduler").isEnabledFor(logging.INFO)
    configure_logging("DEBUG")
    assert logging.getLogger("apscheduler.executors.default").isEnabledFor(logging.INFO)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('1.2.3.4:5 - "WebSocket /session/s/ws?token=tok-123456789" [accepted]', "tok-123456789"),
        ("GET /x?mode=a&api_key=key-123456789&access_token=at-123456789", "key-123456789"),
        ("GET /x?mode=a&api_key=key-123456789&access_token=at-123456789", "at-123456789"),
        ("Authorization: Bearer bearer-123456789", "bearer-123456789"),
        ("headers=[(b'authorization', b'Bearer hdr-123456789')]", "hdr-123456789"),
        ("{'x-api-key': 'xk-123456789'}", "xk-123456789"),
    ],
)
def test_credentials_are_redacted_from_every_line(line: str, secret: str) -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, "f.py", 1, "%s", (line,), None)
    record.path = line  # an ``extra`` value too
    assert RedactSecrets().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert secret not in json.dumps(entry)
    assert "[REDACTED]" in entry["message"]
    assert "[REDACTED]" in entry["path"]


def test_a_traceback_is_redacted_too() -> None:
    try:
        raise ValueError("GET /s/ws?token=tb-123456789 failed")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f.py", 1, "boom", None, sys.exc_info())
    RedactSecrets().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert "tb-123456789" not in entry["exception"]
    assert "token=[REDACTED]" in entry["exception"]
