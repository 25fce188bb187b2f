"""The client's reply types and error classes against the server's own definitions.

The client cannot import the server (it installs on its own), so its Structs are written
out again; these tests fail when a field or an error code is added on one side only.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from kato_sessions import errors, models

from processor_image.service import schemas as processor
from session_manager.api import schemas as manager
from session_manager.gateway.health import ProcessorHealth
from session_manager.pool.warm import PoolStats
from session_manager.reaper import ReapReport

_PAIRS = [
    (models.Observation, processor.ObserveRequest),
    (models.ObserveResult, processor.ObserveResponse),
    (models.ObserveSequenceResult, processor.ObserveSequenceResponse),
    (models.Stm, processor.StmResponse),
    (models.LearnResult, processor.LearnResponse),
    (models.Message, processor.MessageResponse),
    (models.Predictions, processor.PredictionsResponse),
    (models.Pattern, processor.PatternResponse),
    (models.Gene, processor.GeneResponse),
    (models.PerceptData, processor.PerceptDataResponse),
    (models.CognitionData, processor.CognitionDataResponse),
    (models.ProcessorMetrics, processor.MetricsResponse),
    (models.ProcessorStatus, processor.StatusResponse),
    (models.Health, processor.HealthResponse),
    (models.SessionUrls, manager.SessionUrls),
    (models.SessionInfo, manager.SessionInfo),
    (models.CreatedSession, manager.CreatedSession),
    (models.KeepaliveReply, manager.KeepaliveReply),
    (models.RotatedToken, manager.RotatedToken),
    (models.AdminSession, manager.AdminSession),
    (models.AdminSessionPage, manager.AdminSessionPage),
    (models.Capacity, manager.Capacity),
    (models.SnapshotStats, manager.SnapshotStats),
    (models.Stats, manager.Stats),
    (models.PoolStats, PoolStats),
    (models.ReapReport, ReapReport),
    (models.ProcessorHealth, ProcessorHealth),
]


@pytest.mark.parametrize(("ours", "theirs"), _PAIRS, ids=lambda t: t.__name__)
def test_every_reply_type_has_the_servers_fields(
    ours: type[msgspec.Struct], theirs: type[msgspec.Struct]
) -> None:
    assert set(ours.__struct_fields__) == set(theirs.__struct_fields__)


_NOT_FOR_CLIENTS = ("internal", "start-up", "a start-up")


def _documented_codes() -> set[str]:
    """The codes of docs/errors.md a client can be answered (not internal, not start-up)."""
    text = (Path(__file__).parents[3] / "docs" / "errors.md").read_text()
    codes = set()
    for status, code, failure in re.findall(
        r"^\| (\d{3}) \| `([A-Z_0-9]+)` \| (.*)\|$", text, re.M
    ):
        if failure.startswith(("internal", "start-up", "a start-up")) or not status:
            continue
        codes.add(code)
    return codes


def test_every_documented_error_code_has_its_own_exception() -> None:
    codes = _documented_codes()
    assert "CAPACITY_EXCEEDED" in codes
    for code in codes:
        raised = errors.error_for(418, msgspec.json.encode({"error": {"code": code}}))
        assert type(raised) is not errors.KatoError, f"{code} has no exception class"
        assert raised.code == code


def test_an_error_body_not_in_the_services_shape_keeps_status_and_text() -> None:
    raised = errors.error_for(502, b"Bad Gateway", retry_after="3")
    assert type(raised) is errors.KatoError
    assert (raised.status, raised.code, raised.message) == (502, "HTTP_502", "Bad Gateway")
    assert raised.retry_after == 3


def test_a_refused_websocket_close_becomes_the_same_exception_as_over_http() -> None:
    refused = errors.error_for_close(4410, "SESSION_EXPIRED")
    assert isinstance(refused, errors.SessionExpired)
    assert refused.status == 410
    closed = errors.error_for_close(1011, "Processor not initialized")
    assert isinstance(closed, errors.SocketClosed)
    assert closed.details == {"close_code": 1011, "reason": "Processor not initialized"}
