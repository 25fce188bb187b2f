"""The KnowledgeBase protocol: the engine's only port to storage (spec §8).

Names passed through this port are bare 40-hex hashes, never ``PTRN|``-prefixed.
Implementations live in ``processor_image.storage`` and pass one shared contract suite
(``tests/unit/processor_image/storage/test_contract.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import msgspec

__all__ = (
    "KnowledgeBase",
    "KnowledgeDump",
    "PatternRecord",
    "PredictionRecord",
    "SymbolStats",
    "Totals",
)


class PatternRecord(msgspec.Struct, kw_only=True, gc=False):
    """A stored pattern (``patterns_kb`` document without any storage id).

    Not tracked by the garbage collector (it holds lists of strings and dicts of floats, never
    a cycle): a large knowledge base's records then cost no collection time.

    ``emotives`` is always a list here (decision Q4): empty when learned without emotives,
    else the rolling window of at most ``persistence`` averaged emotive dicts.
    """

    name: str
    pattern_data: list[list[str]]
    length: int
    frequency: int
    emotives: list[dict[str, float]]


class SymbolStats(msgspec.Struct, kw_only=True):
    """Per-symbol statistics (``symbols_kb`` document)."""

    name: str
    frequency: int
    pattern_member_frequency: int
    emotives: dict[str, float] = msgspec.field(default_factory=dict)


class Totals(msgspec.Struct, kw_only=True):
    """The single ``metadata`` totals document."""

    total_pattern_frequencies: int = 0
    total_symbol_frequencies: int = 0
    total_symbols_in_patterns_frequencies: int = 0


class PredictionRecord(msgspec.Struct, kw_only=True):
    """A ``predictions_kb`` document: the predictions one observe produced (bare names)."""

    unique_id: str
    predictions: list[dict[str, Any]]


class KnowledgeDump(msgspec.Struct, kw_only=True):
    """Everything a knowledge base holds, for snapshots of in-process stores (hibernation)."""

    patterns: list[PatternRecord] = msgspec.field(default_factory=list)
    symbols: list[SymbolStats] = msgspec.field(default_factory=list)
    totals: Totals = msgspec.field(default_factory=Totals)
    predictions: list[PredictionRecord] = msgspec.field(default_factory=list)


class KnowledgeBase(Protocol):
    """Persistent knowledge of one ``kb_id``: patterns, symbol statistics, totals, predictions.

    Every method is synchronous; the service runs the engine under one lock, so an
    implementation never sees two calls at once from the same processor (but two processors
    with the same ``kb_id`` may share the underlying store).
    """

    def learn(
        self,
        name: str,
        pattern_data: list[list[str]],
        emotives: Mapping[str, float] | None,
        persistence: int,
    ) -> bool:
        """Record one learn of a pattern (spec §3 step 4) and return True when it is new.

        In one batch: upsert the pattern (``frequency += 1``; when ``emotives`` is not None,
        push it and keep the last ``persistence`` entries), update the statistics of every
        distinct symbol (``frequency += count``, ``pattern_member_frequency += 1``, emotive
        sums), and the totals. ``emotives`` is the averaged accumulator with zero entries
        already removed, or None when the accumulator was empty.
        """
        ...

    def get_pattern(self, name: str) -> PatternRecord | None:
        """The stored pattern with this bare hash, or None."""
        ...

    def get_patterns(self, names: Iterable[str]) -> dict[str, PatternRecord]:
        """The stored ones among ``names``, in one round trip (predictions read many at once)."""
        ...

    def pattern_records(self, names: Iterable[str]) -> Mapping[str, PatternRecord]:
        """A read-only mapping holding at least the stored ones among ``names`` (predictions).

        An in-process store may answer with everything it holds, without building a dict.
        """
        ...

    def iter_patterns(self) -> Iterator[PatternRecord]:
        """Every stored pattern, for rebuilding the in-memory index at start-up."""
        ...

    def pattern_count(self) -> int:
        """Number of pattern documents."""
        ...

    def symbol_stats(self, names: Iterable[str]) -> dict[str, SymbolStats]:
        """Statistics of those of ``names`` that are stored (unknown names are left out)."""
        ...

    def member_frequencies(self, names: Iterable[str]) -> Mapping[str, int]:
        """``pattern_member_frequency`` of at least the stored ones among ``names``, read-only.

        As with ``pattern_records``, an in-process store may answer with every symbol's.
        """
        ...

    def symbol_count(self) -> int:
        """Number of distinct symbols ever learned (``N`` in spec §4.7)."""
        ...

    def totals(self) -> Totals:
        """The totals document (zeros when nothing was learned)."""
        ...

    def store_predictions(self, unique_id: str, predictions: bytes) -> None:
        """Append a predictions record; records are never replaced.

        ``predictions`` is the record as JSON (a list of prediction objects, bare names), as the
        engine writes it: a store may keep the bytes, or decode them into documents.
        """
        ...

    def find_predictions(self, unique_id: str) -> list[dict[str, Any]] | None:
        """Predictions of the first record stored under ``unique_id``, or None."""
        ...

    def clear(self) -> None:
        """Wipe every collection and recreate the zero totals (``clear-all``)."""
        ...

    @property
    def persistent(self) -> bool:
        """True when the data outlives the process (MongoDB); False for the memory store.

        A processor snapshot (``GET /state``) carries ``dump()`` only when this is False.
        """
        ...

    def dump(self) -> KnowledgeDump:
        """Everything stored, in a form ``load`` takes back."""
        ...

    def load(self, dump: KnowledgeDump) -> None:
        """Replace everything stored with ``dump``."""
        ...

    def close(self) -> None:
        """Release connections; the data stays."""
        ...
