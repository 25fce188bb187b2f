"""The in-process knowledge base: plain dicts, the default and the fastest store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

from processor_image.engine.knowledge import (
    KnowledgeDump,
    PatternRecord,
    PredictionRecord,
    SymbolStats,
    Totals,
)

__all__ = ("MemoryKnowledgeBase",)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[dict[str, Any]]).decode


class MemoryKnowledgeBase:
    """Knowledge held by this process only; snapshots carry it through hibernation."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._patterns: dict[str, PatternRecord] = {}
        self._symbols: dict[str, SymbolStats] = {}
        self._totals = Totals()
        # Stored predictions are kept encoded: they are many, rarely read, and as bytes they
        # cost the garbage collector nothing (spec §4.10: the collection grows without bound).
        self._predictions: dict[str, bytes] = {}
        self._prediction_log: list[tuple[str, bytes]] = []

    @property
    def persistent(self) -> bool:
        """The data dies with the process."""
        return False

    def learn(
        self,
        name: str,
        pattern_data: list[list[str]],
        emotives: Mapping[str, float] | None,
        persistence: int,
    ) -> bool:
        """Record one learn; True when the pattern is new."""
        flat = [symbol for event in pattern_data for symbol in event]
        record = self._patterns.get(name)
        new = record is None
        if record is None:
            record = PatternRecord(
                name=name,
                pattern_data=[list(event) for event in pattern_data],
                length=len(flat),
                frequency=0,
                emotives=[],
            )
            self._patterns[name] = record
        record.frequency += 1
        if emotives is not None:
            record.emotives.append(dict(emotives))
            if persistence > 0:
                del record.emotives[:-persistence]
            else:
                record.emotives.clear()
        counts = Counter(flat)
        for symbol, count in counts.items():
            stats = self._symbols.get(symbol)
            if stats is None:
                stats = self._symbols[symbol] = SymbolStats(
                    name=symbol, frequency=0, pattern_member_frequency=0
                )
            stats.frequency += count
            stats.pattern_member_frequency += 1
            for key, value in (emotives or {}).items():
                stats.emotives[key] = stats.emotives.get(key, 0.0) + value
        totals = self._totals
        totals.total_pattern_frequencies += 1
        totals.total_symbol_frequencies += len(flat)
        totals.total_symbols_in_patterns_frequencies += len(counts)
        return new

    def get_pattern(self, name: str) -> PatternRecord | None:
        """The pattern with this bare hash, or None."""
        return self._patterns.get(name)

    def get_patterns(self, names: Iterable[str]) -> dict[str, PatternRecord]:
        """The known ones among ``names``."""
        patterns = self._patterns
        return {name: patterns[name] for name in names if name in patterns}

    def iter_patterns(self) -> Iterator[PatternRecord]:
        """Every stored pattern."""
        return iter(list(self._patterns.values()))

    def pattern_count(self) -> int:
        """Number of patterns."""
        return len(self._patterns)

    def symbol_stats(self, names: Iterable[str]) -> dict[str, SymbolStats]:
        """Statistics of the known ones among ``names``."""
        symbols = self._symbols
        return {name: symbols[name] for name in names if name in symbols}

    def symbol_count(self) -> int:
        """Number of distinct symbols learned."""
        return len(self._symbols)

    def totals(self) -> Totals:
        """The totals document."""
        return self._totals

    def store_predictions(self, unique_id: str, predictions: list[dict[str, Any]]) -> None:
        """Append a record; the first one per id is the one found later."""
        encoded = _encode(predictions)
        self._predictions.setdefault(unique_id, encoded)
        self._prediction_log.append((unique_id, encoded))

    def find_predictions(self, unique_id: str) -> list[dict[str, Any]] | None:
        """Predictions first stored under ``unique_id``."""
        encoded = self._predictions.get(unique_id)
        return None if encoded is None else _decode(encoded)

    def clear(self) -> None:
        """Wipe everything; totals back to zero."""
        self._reset()

    def dump(self) -> KnowledgeDump:
        """A deep copy of everything."""
        dump = KnowledgeDump(
            patterns=list(self._patterns.values()),
            symbols=list(self._symbols.values()),
            totals=self._totals,
            predictions=[
                PredictionRecord(unique_id=unique_id, predictions=_decode(encoded))
                for unique_id, encoded in self._prediction_log
            ],
        )
        return msgspec.convert(msgspec.to_builtins(dump), KnowledgeDump)

    def load(self, dump: KnowledgeDump) -> None:
        """Replace everything with a copy of ``dump``."""
        copied = msgspec.convert(msgspec.to_builtins(dump), KnowledgeDump)
        self.clear()
        self._patterns = {record.name: record for record in copied.patterns}
        self._symbols = {stats.name: stats for stats in copied.symbols}
        self._totals = copied.totals
        for record in copied.predictions:
            self.store_predictions(record.unique_id, record.predictions)

    def close(self) -> None:
        """Nothing to release."""
