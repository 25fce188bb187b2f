"""The bodies the service answers with, as typed msgspec Structs.

Field names are the service's (its OpenAPI: ``/schema``; the processor's behind a session:
``/session/<id>/schema``). Unknown fields are ignored, so a newer server does not break an
older client; ``tests/unit/client/test_models.py`` checks these against the server's own
definitions.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = (
    "AdminSession",
    "AdminSessionPage",
    "Capacity",
    "CognitionData",
    "CreatedSession",
    "Gene",
    "Health",
    "KeepaliveReply",
    "LearnResult",
    "Message",
    "Observation",
    "ObserveResult",
    "ObserveSequenceResult",
    "Pattern",
    "PerceptData",
    "PoolStats",
    "Predictions",
    "ProcessorHealth",
    "ProcessorMetrics",
    "ProcessorStatus",
    "ReapReport",
    "RotatedToken",
    "SessionInfo",
    "SessionUrls",
    "SnapshotStats",
    "Stats",
    "Stm",
    "WsMessage",
)


# -- the processor (reached as /session/<id>/...) ----------------------------------------------


class Observation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One observation to send (``observe``, ``observe_sequence``); every field optional."""

    strings: list[str] = msgspec.field(default_factory=list)
    vectors: list[list[float]] = msgspec.field(default_factory=list)
    emotives: dict[str, float] = msgspec.field(default_factory=dict)
    unique_id: str | None = None


class ObserveResult(msgspec.Struct, kw_only=True):
    """Result of one observation."""

    status: str
    processor_id: str
    auto_learned_pattern: str | None
    time: int
    unique_id: str


class ObserveSequenceResult(msgspec.Struct, kw_only=True):
    """One result per observation, in order."""

    results: list[ObserveResult]
    processor_id: str


class Stm(msgspec.Struct, kw_only=True):
    """Short-term memory: one list of symbols per event."""

    stm: list[list[str]]
    processor_id: str


class LearnResult(msgspec.Struct, kw_only=True):
    """The learned pattern's name, or ``""`` with the reason in ``message``."""

    pattern_name: str
    processor_id: str
    message: str


class Message(msgspec.Struct, kw_only=True):
    """``{"status": "okay", "message": …}`` replies (clears, gene updates)."""

    status: str
    message: str
    processor_id: str


class Predictions(msgspec.Struct, kw_only=True):
    """Predictions, with ``PTRN|``-prefixed pattern names."""

    predictions: list[dict[str, Any]]
    processor_id: str


class Pattern(msgspec.Struct, kw_only=True):
    """One stored pattern."""

    pattern: dict[str, Any]
    processor_id: str


class Gene(msgspec.Struct, kw_only=True):
    """One gene's live value."""

    gene_name: str
    gene_value: Any
    processor_id: str


class PerceptData(msgspec.Struct, kw_only=True):
    """The last observation as received."""

    percept_data: dict[str, Any]
    processor_id: str


class CognitionData(msgspec.Struct, kw_only=True):
    """Predictions, emotives, last event and STM."""

    cognition_data: dict[str, Any]
    processor_id: str


class ProcessorMetrics(msgspec.Struct, kw_only=True):
    """The processor's counters (``GET /metrics`` of a session)."""

    processor_id: str
    observations_processed: int
    patterns_learned: int
    stm_size: int
    uptime_seconds: float


class ProcessorStatus(msgspec.Struct, kw_only=True):
    """The processor's status (``GET /status``; also what a ``PUT /state`` answers)."""

    status: str
    processor_id: str
    processor_name: str
    uptime: float
    stm_length: int
    time: int
    engine_core: str


class Health(msgspec.Struct, kw_only=True):
    """The processor's liveness."""

    status: str
    processor_id: str | None
    uptime: float


class WsMessage(msgspec.Struct, kw_only=True):
    """One WebSocket reply: its ``type`` and ``data``.

    Types: ``observation_result``, ``stm``, ``predictions``, ``learn_result``, ``status``,
    ``pong``, ``error``.
    """

    type: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


# -- the manager --------------------------------------------------------------------------------


class SessionUrls(msgspec.Struct, kw_only=True):
    """Where the session's processor is reached through the manager."""

    http: str
    ws: str


class SessionInfo(msgspec.Struct, kw_only=True):
    """A session as its owner sees it (``GET /session/<id>``); timestamps are ISO 8601."""

    session_id: str
    tenant: str
    user_id: str
    processor_id: str
    kb_id: str
    status: str
    created_at: str
    last_activity: str
    idle_timeout_s: int
    max_age_s: int
    idle_expires_at: str | None
    expires_at: str
    genes: dict[str, Any]
    labels: dict[str, str]
    urls: SessionUrls
    live_genes: dict[str, Any] | None = None


class CreatedSession(SessionInfo, kw_only=True):
    """The create reply: the record plus the token, shown this once."""

    token: str | None


class KeepaliveReply(msgspec.Struct, kw_only=True):
    """The deadlines after a keepalive."""

    session_id: str
    status: str
    last_activity: str
    idle_expires_at: str | None
    expires_at: str


class RotatedToken(msgspec.Struct, kw_only=True):
    """The new token, shown this once; the old one is void."""

    session_id: str
    token: str


class AdminSession(SessionInfo, kw_only=True):
    """A session as an admin sees it: where its processor runs, too."""

    backend: str
    ref: str
    endpoint: str
    node: str = ""
    """The host its processor runs on (``swarm``: the node's hostname); empty otherwise."""
    status_changed_at: str
    last_event: str | None = None
    last_event_at: str | None = None
    out_of_memory_count: int = 0


class AdminSessionPage(msgspec.Struct, kw_only=True):
    """One page of the admin listing; pass ``next_cursor`` back for the next."""

    sessions: list[AdminSession]
    next_cursor: str | None


class Capacity(msgspec.Struct, kw_only=True):
    """Limits, use and room left."""

    max_sessions: int
    used: int
    left: int
    max_sessions_per_user: int
    max_concurrent_starts: int
    starts_in_progress: int


class SnapshotStats(msgspec.Struct, kw_only=True):
    """Processor states kept in the snapshot store."""

    count: int
    bytes: int
    average_bytes: int


class PoolStats(msgspec.Struct, kw_only=True):
    """The warm pool: processors wanted, ready and starting; claims that hit or missed."""

    target: int = 0
    ready: int = 0
    refilling: int = 0
    hits: int = 0
    misses: int = 0
    claim_failures: int = 0
    refill_failures: int = 0
    last_refill_ms: float | None = None


class Stats(msgspec.Struct, kw_only=True):
    """``GET /admin/stats``."""

    sessions_by_status: dict[str, int]
    total: int
    capacity: Capacity
    backend: str
    manager_id: str
    reap_action: str
    snapshots: SnapshotStats
    warm_pool: PoolStats | None = None
    processors_by_node: dict[str, int] = {}
    """Running processors per node (``swarm``); empty on single-host backends."""


class ReapReport(msgspec.Struct, kw_only=True):
    """What one reaper pass did (``POST /admin/reap``)."""

    started_at: str | int
    """When the pass began: ISO 8601 (epoch ms from a manager that predates that format)."""
    duration_ms: float = 0.0
    examined: int = 0
    hibernated: list[str] = msgspec.field(default_factory=list)
    ended: dict[str, list[str]] = msgspec.field(default_factory=dict)
    skipped: int = 0
    failed: dict[str, str] = msgspec.field(default_factory=dict)


class ProcessorHealth(msgspec.Struct, kw_only=True):
    """A static processor (gateway mode) and what its last health check found."""

    id: str
    name: str
    url: str
    healthy: bool = False
    checked_at: str | float | None = None
    """When it was last checked: ISO 8601 (epoch s from a manager that predates that format)."""
    latency_ms: float | None = None
    error: str | None = None
