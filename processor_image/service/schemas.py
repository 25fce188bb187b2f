"""Request and response bodies of the processor API (spec §7), with the spec's field names."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar.params import KwargDefinition

from processor_image.engine import ProcessorState
from processor_image.engine.sharing import KnowledgeOp

__all__ = (
    "CognitionDataResponse",
    "FenceResponse",
    "GeneResponse",
    "GenesUpdateRequest",
    "HealthResponse",
    "KnowledgeReloadResponse",
    "KnowledgeSyncRequest",
    "KnowledgeSyncResponse",
    "LearnResponse",
    "MessageResponse",
    "MetricsResponse",
    "ObserveRequest",
    "ObserveResponse",
    "ObserveSequenceDetailed",
    "ObserveSequenceRequest",
    "ObserveSequenceResponse",
    "PatternResponse",
    "PerceptDataResponse",
    "PredictionsResponse",
    "ProcessorState",
    "SequenceDetails",
    "StatusResponse",
    "StmResponse",
)


class ObserveRequest(msgspec.Struct, kw_only=True):
    """One observation; every field optional, unknown fields ignored (spec §2.1)."""

    strings: list[str] = msgspec.field(default_factory=list)
    vectors: list[list[float]] = msgspec.field(default_factory=list)
    emotives: dict[str, float] = msgspec.field(default_factory=dict)
    unique_id: str | None = None


class ObserveResponse(msgspec.Struct, kw_only=True):
    """Result of one observation (spec §2.5)."""

    status: str
    processor_id: str
    auto_learned_pattern: str | None
    time: int
    unique_id: str


class ObserveSequenceRequest(msgspec.Struct, kw_only=True):
    """Many observations processed in order in one request.

    The options are KATO v3's (the manager's v3 API sends them): ``clear_stm_between`` empties
    STM (not the emotive accumulator) before every observation but the first;
    ``learn_after_each`` learns after each observation that left STM non-empty;
    ``learn_at_end`` learns once after the last one, if STM is non-empty. ``details`` asks
    for ``SequenceDetails`` in the reply.
    """

    observations: list[ObserveRequest]
    learn_after_each: bool = False
    learn_at_end: bool = False
    clear_stm_between: bool = False
    details: bool = False


class SequenceDetails(msgspec.Struct, kw_only=True):
    """STM lengths and what was learned along a sequence (``details: true``)."""

    initial_stm_length: int
    stm_lengths: list[int]
    """After each observation and its learn."""
    learned_patterns: list[str]
    """In order: each ``learn_after_each`` result (possibly ``""``), each auto-learned pattern,
    then ``final_learned_pattern``."""
    final_learned_pattern: str | None
    final_stm_length: int


class ObserveSequenceResponse(msgspec.Struct, kw_only=True):
    """One result per observation, in order."""

    results: list[ObserveResponse]
    processor_id: str


class ObserveSequenceDetailed(ObserveSequenceResponse, kw_only=True):
    """The reply to a sequence sent with ``details: true``."""

    details: SequenceDetails


class KnowledgeSyncRequest(msgspec.Struct, kw_only=True):
    """``POST /knowledge/sync``: log entries from position ``since`` to apply; drain or not."""

    since: int = 0
    ops: list[KnowledgeOp] = msgspec.field(default_factory=list)
    drain: bool = False


class KnowledgeSyncResponse(msgspec.Struct, kw_only=True):
    """The processor's log position after applying, and the changes drained from its outbox."""

    offset: int
    drained: list[KnowledgeOp]
    processor_id: str


class KnowledgeReloadResponse(msgspec.Struct, kw_only=True):
    """``POST /knowledge/reload``: the patterns the search index now holds."""

    patterns: int
    processor_id: str


class GenesUpdateRequest(msgspec.Struct, kw_only=True):
    """``{"genes": {name: value}}``; names applied in order (spec §5.2)."""

    genes: dict[str, Any]


class HealthResponse(msgspec.Struct, kw_only=True):
    """Liveness; answered without the lock."""

    status: str
    processor_id: str | None
    uptime: float


class StatusResponse(msgspec.Struct, kw_only=True):
    """Processor status (spec §6)."""

    status: str
    processor_id: str
    processor_name: str
    uptime: float
    stm_length: int
    time: int
    engine_core: str
    """The matching core predictions run on: ``compiled`` or ``python`` (``KATO_ENGINE_CORE``)."""


class StmResponse(msgspec.Struct, kw_only=True):
    """Short-term memory."""

    stm: list[list[str]]
    processor_id: str


class LearnResponse(msgspec.Struct, kw_only=True):
    """The learned pattern's name, or ``""`` with the reason."""

    pattern_name: str
    processor_id: str
    message: str


class MessageResponse(msgspec.Struct, kw_only=True):
    """``{"status": "okay", "message": …}`` replies (clears, gene updates)."""

    status: str
    message: str
    processor_id: str


class PredictionsResponse(msgspec.Struct, kw_only=True):
    """Predictions with ``PTRN|``-prefixed names (spec §4.8, §4.10)."""

    predictions: Annotated[
        msgspec.Raw,
        KwargDefinition(
            description="The prediction objects (spec §4.8)",
            schema_extra={"type": "array", "items": {"type": "object"}},
        ),
    ]
    """A JSON list, sent as the engine keeps it (not decoded and encoded again)."""
    processor_id: str


class PatternResponse(msgspec.Struct, kw_only=True):
    """One stored pattern."""

    pattern: dict[str, Any]
    processor_id: str


class GeneResponse(msgspec.Struct, kw_only=True):
    """One gene's value."""

    gene_name: str
    gene_value: Any
    processor_id: str


class PerceptDataResponse(msgspec.Struct, kw_only=True):
    """The last observation as received."""

    percept_data: dict[str, Any]
    processor_id: str


class CognitionDataResponse(msgspec.Struct, kw_only=True):
    """The processor's cognition data."""

    cognition_data: dict[str, Any]
    processor_id: str


class MetricsResponse(msgspec.Struct, kw_only=True):
    """Counters (spec §6)."""

    processor_id: str
    observations_processed: int
    patterns_learned: int
    stm_size: int
    uptime_seconds: float


class ErrorInfo(msgspec.Struct, kw_only=True):
    """What went wrong: a stable ``code`` to branch on, a message for people, context."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(msgspec.Struct, kw_only=True):
    """The body of every 4xx/5xx answer (``service.errors.error_body``; documented per route)."""

    error: ErrorInfo
    status: int


class FenceResponse(msgspec.Struct, kw_only=True):
    """``POST``/``DELETE /fence`` (manager-internal): whether the fence is up now."""

    fenced: bool
    closed_websockets: int
    processor_id: str
