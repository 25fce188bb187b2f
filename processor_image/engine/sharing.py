"""Knowledge shared between processors with private memory stores, as a log of changes.

A processor started with ``KNOWLEDGE_OUTBOX=1`` records every change it makes to its knowledge
base (each learn, each clear) as a ``KnowledgeOp`` in its outbox. Whoever shares its knowledge
(the manager's v3 API: the sessions of one node) drains the outbox into one log per node and
hands each processor the log entries it has not applied (``Processor.apply_knowledge``); the
processor skips its own (``origin``) and counts its position in the log (``offset``). So every
memory store of a node holds the same patterns, frequencies and symbol statistics once it has
caught up. Both travel in the processor's snapshot, so a hibernated processor resumes at the
position its knowledge base is at.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ("KnowledgeOp", "KnowledgeShare")


class KnowledgeOp(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One change to a knowledge base: a learn (bare hash, events, emotives) or a clear."""

    op: Literal["learn", "clear"]
    origin: str = ""
    """The processor that made it (set when it enters the node's log)."""
    name: str = ""
    pattern: list[list[str]] = []
    emotives: dict[str, float] | None = None


class KnowledgeShare(msgspec.Struct, kw_only=True):
    """A processor's outbox (changes not yet drained) and its position in the node's log."""

    offset: int = 0
    outbox: list[KnowledgeOp] = []
