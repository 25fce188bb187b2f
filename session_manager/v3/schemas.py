"""v3's request and response bodies, with v3's field names (unknown request fields ignored)."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = (
    "CreateSession",
    "Observation",
    "ObserveSequence",
    "SessionResponse",
)


class CreateSession(msgspec.Struct, kw_only=True):
    """``POST /sessions``."""

    node_id: str
    config: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    ttl_seconds: int | None = None


class Observation(msgspec.Struct, kw_only=True):
    """ObservationData (every field optional); ``unique_id`` is read in sequences only."""

    strings: list[str] = msgspec.field(default_factory=list)
    vectors: list[list[float]] = msgspec.field(default_factory=list)
    emotives: dict[str, float] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    unique_id: str | None = None


class ObserveSequence(msgspec.Struct, kw_only=True):
    """``POST /sessions/{id}/observe-sequence``."""

    observations: list[Observation]
    learn_after_each: bool = False
    learn_at_end: bool = False
    clear_stm_between: bool = False


class SessionResponse(msgspec.Struct, kw_only=True):
    """SessionResponse: ``POST /sessions`` and ``GET /sessions/{id}``."""

    session_id: str
    node_id: str
    created_at: str
    expires_at: str
    ttl_seconds: int
    metadata: dict[str, Any]
    session_config: dict[str, Any]
