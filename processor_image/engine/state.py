"""A processor's in-memory state as one value, for hibernation (``GET``/``PUT /state``)."""

from __future__ import annotations

from typing import Any

import msgspec

from processor_image.engine.genes import Genes
from processor_image.engine.knowledge import KnowledgeDump

__all__ = ("ProcessorState",)


class ProcessorState(msgspec.Struct, kw_only=True):
    """Everything that makes two processors indistinguishable, bar identity and uptime.

    ``knowledge`` carries the whole knowledge base only when the store does not outlive the
    process (the memory store); a MongoDB-backed processor finds its knowledge by ``kb_id``.
    """

    genes: Genes
    manifest: dict[str, Any]
    window: int
    time: int
    stm: list[list[str]]
    emotive_accumulator: list[dict[str, float]]
    current_emotives: dict[str, float]
    symbols: list[str]
    percept_data: dict[str, Any]
    predictions: list[dict[str, Any]]
    knowledge: KnowledgeDump | None = None
