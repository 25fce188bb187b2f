"""A processor's in-memory state as one value, for hibernation (``GET``/``PUT /state``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from processor_image.engine.genes import Genes
from processor_image.engine.knowledge import KnowledgeDump
from processor_image.engine.sharing import KnowledgeShare

__all__ = ("ProcessorState",)


class ProcessorState(msgspec.Struct, kw_only=True):
    """Everything that makes two processors indistinguishable, bar identity and uptime.

    ``knowledge`` carries the whole knowledge base only when the store does not outlive the
    process (the memory store); a MongoDB-backed processor finds its knowledge by ``kb_id``.
    ``seq`` is not the engine's: the service sets it (see ``service.runtime.Runtime.seq``); the
    manager trims its journal of what a checkpoint already holds by it.
    """

    genes: Genes
    manifest: dict[str, Any]
    window: Annotated[int, Meta(ge=1)]
    time: Annotated[int, Meta(ge=0)]
    stm: list[Annotated[list[str], Meta(min_length=1)]]
    emotive_accumulator: list[dict[str, float]]
    current_emotives: dict[str, float]
    symbols: list[str]
    percept_data: dict[str, Any]
    predictions: list[dict[str, Any]]
    knowledge: KnowledgeDump | None = None
    seq: Annotated[int, Meta(ge=0)] = 0
    """Mutating requests applied so far (the service's counter; 0 in older snapshots)."""
    share: KnowledgeShare | None = None
    """Shared knowledge's outbox and log position (``engine.sharing``), when shared."""

    def __post_init__(self) -> None:
        """Reject cached predictions the API could not serve back (a hand-made body)."""
        for prediction in self.predictions:
            missing = _PREDICTION_KEYS - prediction.keys()
            if missing or not isinstance(prediction.get("name"), str):
                raise ValueError(f"cached prediction lacks {sorted(missing) or ['name']}")


_PREDICTION_KEYS = frozenset(
    {
        "type",
        "name",
        "frequency",
        "emotives",
        "matches",
        "past",
        "present",
        "missing",
        "extras",
        "potential",
        "evidence",
        "similarity",
        "fragmentation",
        "snr",
        "entropy",
        "hamiltonian",
        "grand_hamiltonian",
        "confluence",
        "sequence",
        "future",
        "confidence",
        "itfdf_similarity",
    }
)
