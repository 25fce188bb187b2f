"""The in-process knowledge base: plain dicts, the default and the fastest store."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import msgspec
import zstandard

from processor_image.engine.core import CoreUnavailable, compiled_module, resolve
from processor_image.engine.knowledge import (
    KnowledgeDump,
    PatternRecord,
    PredictionRecord,
    SymbolStats,
    Totals,
)

__all__ = ("DEFAULT_PREDICTIONS_HISTORY", "UNBOUNDED", "MemoryKnowledgeBase")

DEFAULT_PREDICTIONS_HISTORY = 1000
"""Stored prediction records a memory store keeps (``PREDICTIONS_HISTORY``)."""
UNBOUNDED = 0
"""``PREDICTIONS_HISTORY=0``: keep every record, as the reference does (spec §4.10)."""


Learn = Callable[
    [
        dict[str, PatternRecord],
        dict[str, int],
        dict[str, int],
        Totals,
        type[PatternRecord],
        str,
        Sequence[Sequence[str]],
    ],
    bool,
]


def _learn(
    patterns: dict[str, PatternRecord],
    frequency: dict[str, int],
    members: dict[str, int],
    totals: Totals,
    record_type: type[PatternRecord],
    name: str,
    events: Sequence[Sequence[str]],
) -> bool:
    """A learn but its emotives: ``_core.learn`` in Python (the reference; see its docstring)."""
    copied = [list(event) for event in events]
    flat = [symbol for event in copied for symbol in event]
    distinct = dict.fromkeys(flat)  # every symbol hashed before anything changes
    record = patterns.get(name)
    if record is None:
        patterns[name] = record_type(
            name=name, pattern_data=copied, length=len(flat), frequency=1, emotives=[]
        )
    else:
        record.frequency += 1
    for symbol in flat:
        frequency[symbol] = frequency.get(symbol, 0) + 1
    for symbol in distinct:
        members[symbol] = members.get(symbol, 0) + 1
    totals.total_pattern_frequencies += 1
    totals.total_symbol_frequencies += len(flat)
    totals.total_symbols_in_patterns_frequencies += len(distinct)
    return record is None


def _choose_learn(choice: str | None) -> Learn:
    """The compiled ``learn`` when ``choice`` (None: ``KATO_ENGINE_CORE``) is the compiled core."""
    try:
        core = resolve(choice)
    except CoreUnavailable:  # the processor refuses to start with this setting anyway
        return _learn
    module = compiled_module() if core == "compiled" else None
    return _learn if module is None else cast(Learn, module.learn)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[dict[str, Any]]).decode
_ZSTD_LEVEL = -3
"""A stored record (up to ``max_predictions`` predictions, ~100 KB of JSON on dense knowledge)
shrinks ~4x at this fast level, in ~0.25 ms; level 1 shrinks it ~5x but takes ~0.35 ms, a third
of a dense observe: 1,000 kept records then hold ~25 MB instead of ~19 MB."""


class MemoryKnowledgeBase:
    """Knowledge held by this process only; snapshots carry it through hibernation.

    Stored predictions (one record per observe that predicted, spec §4.10) are the one part
    that grows with observations rather than with knowledge, so only the last
    ``predictions_history`` records are kept (``UNBOUNDED``: all of them, as the reference).
    An evicted record is gone as if never stored: ``?unique_id=`` of it finds the next retained
    record with that id, else nothing (``[]`` over HTTP, the reply for an unknown id).
    """

    def __init__(
        self, predictions_history: int = DEFAULT_PREDICTIONS_HISTORY, *, core: str | None = None
    ) -> None:
        """``core``: whose ``learn`` learns (None: ``KATO_ENGINE_CORE``); both store the same."""
        if predictions_history < 0:
            raise ValueError("predictions_history must be >= 0 (0: unbounded)")
        self.predictions_history = predictions_history
        self._learn = _choose_learn(core)
        # One per store: a zstd context must not be used by two threads at once.
        self._compress = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress
        self._decompress = zstandard.ZstdDecompressor().decompress
        self._reset()

    def _reset(self) -> None:
        self._patterns: dict[str, PatternRecord] = {}
        # Symbol statistics as plain counts (first-seen order), ``SymbolStats`` made when read:
        # a learn is then a few dict increments, in C when the compiled core is built.
        self._symbol_frequency: dict[str, int] = {}
        self._member_frequency: dict[str, int] = {}
        self._symbol_emotives: dict[str, dict[str, float]] = {}
        self._totals = Totals()
        # Stored predictions are kept encoded and compressed: they are many, rarely read, and
        # as bytes they cost the garbage collector nothing. ``_prediction_log`` holds the
        # retained records in the order stored; ``_first`` the first retained record of each id
        # (what a lookup finds) and ``_records`` how many retained records carry that id.
        self._first: dict[str, bytes] = {}
        self._records: Counter[str] = Counter()
        self._prediction_log: deque[tuple[str, bytes]] = deque()

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
        new = self._learn(
            self._patterns,
            self._symbol_frequency,
            self._member_frequency,
            self._totals,
            PatternRecord,
            name,
            pattern_data,
        )
        if emotives is not None:
            record = self._patterns[name]
            record.emotives.append(dict(emotives))
            if persistence > 0:
                del record.emotives[:-persistence]
            else:
                record.emotives.clear()
            if emotives:
                for symbol in dict.fromkeys(symbol for event in pattern_data for symbol in event):
                    sums = self._symbol_emotives.setdefault(symbol, {})
                    for key, value in emotives.items():
                        sums[key] = sums.get(key, 0.0) + value
        return new

    def get_pattern(self, name: str) -> PatternRecord | None:
        """The pattern with this bare hash, or None."""
        return self._patterns.get(name)

    def get_patterns(self, names: Iterable[str]) -> dict[str, PatternRecord]:
        """The known ones among ``names``."""
        patterns = self._patterns
        return {name: patterns[name] for name in names if name in patterns}

    def pattern_records(self, names: Iterable[str]) -> Mapping[str, PatternRecord]:
        """Every pattern (a superset of ``names``), without a copy."""
        return self._patterns

    def iter_patterns(self) -> Iterator[PatternRecord]:
        """Every stored pattern."""
        return iter(list(self._patterns.values()))

    def pattern_count(self) -> int:
        """Number of patterns."""
        return len(self._patterns)

    def symbol_stats(self, names: Iterable[str]) -> dict[str, SymbolStats]:
        """Statistics of the known ones among ``names``."""
        members = self._member_frequency
        return {name: self._stats(name) for name in names if name in members}

    def _stats(self, name: str) -> SymbolStats:
        return SymbolStats(
            name=name,
            frequency=self._symbol_frequency[name],
            pattern_member_frequency=self._member_frequency[name],
            emotives=dict(self._symbol_emotives.get(name, {})),
        )

    def member_frequencies(self, names: Iterable[str]) -> Mapping[str, int]:
        """Every symbol's (a superset of ``names``), without a copy."""
        return self._member_frequency

    def symbol_count(self) -> int:
        """Number of distinct symbols learned."""
        return len(self._member_frequency)

    def totals(self) -> Totals:
        """The totals document."""
        return self._totals

    def store_predictions(self, unique_id: str, predictions: bytes) -> None:
        """Append a record (evicting the oldest past the bound); the first per id is found."""
        # Copied: zstandard's result keeps an allocation the size of its input (~100 KB for a
        # dense record, ~4x what it holds); 1,000 kept records would pin ~100 MB instead of ~25.
        encoded = memoryview(self._compress(predictions)).tobytes()
        self._first.setdefault(unique_id, encoded)
        self._records[unique_id] += 1
        self._prediction_log.append((unique_id, encoded))
        if self.predictions_history != UNBOUNDED:
            while len(self._prediction_log) > self.predictions_history:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        """Forget the oldest record; its id then finds its next retained record, if any."""
        unique_id, _ = self._prediction_log.popleft()
        self._records[unique_id] -= 1
        if self._records[unique_id] == 0:
            del self._records[unique_id]
            del self._first[unique_id]
            return
        # A repeated id (rare: ids are normally unique): the oldest left is its first record.
        self._first[unique_id] = next(
            encoded for uid, encoded in self._prediction_log if uid == unique_id
        )

    def find_predictions(self, unique_id: str) -> list[dict[str, Any]] | None:
        """Predictions of the first retained record stored under ``unique_id``."""
        encoded = self._first.get(unique_id)
        return None if encoded is None else _decode(self._decompress(encoded))

    def clear(self) -> None:
        """Wipe everything; totals back to zero."""
        self._reset()

    def dump(self) -> KnowledgeDump:
        """A deep copy of everything retained (only the kept prediction records)."""
        dump = KnowledgeDump(
            patterns=list(self._patterns.values()),
            symbols=[self._stats(name) for name in self._member_frequency],
            totals=self._totals,
        )
        copied = msgspec.convert(msgspec.to_builtins(dump), KnowledgeDump)
        # Decoded from bytes, the predictions are new objects already: no second copy.
        copied.predictions = [
            PredictionRecord(unique_id=unique_id, predictions=_decode(self._decompress(encoded)))
            for unique_id, encoded in self._prediction_log
        ]
        return copied

    def load(self, dump: KnowledgeDump) -> None:
        """Replace everything with a copy of ``dump``; of its predictions, the last ones kept."""
        knowledge = msgspec.structs.replace(dump, predictions=[])
        copied = msgspec.convert(msgspec.to_builtins(knowledge), KnowledgeDump)
        self.clear()
        self._patterns = {record.name: record for record in copied.patterns}
        for stats in copied.symbols:
            self._symbol_frequency[stats.name] = stats.frequency
            self._member_frequency[stats.name] = stats.pattern_member_frequency
            if stats.emotives:
                self._symbol_emotives[stats.name] = stats.emotives
        self._totals = copied.totals
        kept = dump.predictions
        if self.predictions_history != UNBOUNDED:
            kept = kept[-self.predictions_history :]
        for record in kept:  # encoded, so the stored bytes share nothing with ``dump``
            self.store_predictions(record.unique_id, _encode(record.predictions))

    def close(self) -> None:
        """Nothing to release."""
