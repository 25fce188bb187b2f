"""In-memory search structures over the learned patterns (spec §4.2, exact variant).

The index never changes results: it only skips patterns whose similarity provably stays
below ``recall_threshold``. For a pattern ``a`` and the state ``b`` the matcher's block total
``M`` is at most the multiset intersection ``Σ min(count_a(s), count_b(s))``, and similarity
``2M / (len(a) + len(b))`` grows with ``M``; so a pattern whose bound already falls short
cannot pass. With ``recall_threshold == 0`` every pattern is a candidate (spec §4.5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

__all__ = ("IndexedPattern", "PatternIndex")


class IndexedPattern:
    """A learned pattern as the matcher needs it: its events and their flattening."""

    __slots__ = ("events", "flat", "name")

    def __init__(self, name: str, events: Sequence[Sequence[str]]) -> None:
        self.name = name
        self.events = [list(event) for event in events]
        self.flat = [symbol for event in self.events for symbol in event]


class PatternIndex:
    """Patterns by name plus an inverted index symbol -> {pattern name: occurrences}."""

    def __init__(self) -> None:
        self._patterns: dict[str, IndexedPattern] = {}
        self._postings: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._patterns)

    def __iter__(self) -> Iterator[IndexedPattern]:
        return iter(self._patterns.values())

    def add(self, name: str, events: Sequence[Sequence[str]]) -> None:
        """Index a pattern; adding a known name again changes nothing."""
        if name in self._patterns:
            return
        pattern = IndexedPattern(name, events)
        self._patterns[name] = pattern
        for symbol, count in Counter(pattern.flat).items():
            self._postings.setdefault(symbol, {})[name] = count

    def clear(self) -> None:
        """Forget every pattern (``clear-all``)."""
        self._patterns.clear()
        self._postings.clear()

    def candidates(
        self, state: Sequence[str], threshold: float, counts: Counter[str] | None = None
    ) -> list[tuple[IndexedPattern, int]]:
        """Patterns that may reach ``threshold`` against ``state``, each with its bound on ``M``.

        Never drops a pattern that can reach the threshold. The bound is -1 when unknown.
        """
        if threshold == 0.0:
            return [(pattern, -1) for pattern in self._patterns.values()]
        bounds: dict[str, int] = {}
        for symbol, in_state in (counts if counts is not None else Counter(state)).items():
            posting = self._postings.get(symbol)
            if posting is None:
                continue
            for name, in_pattern in posting.items():
                bounds[name] = bounds.get(name, 0) + min(in_pattern, in_state)
        patterns = self._patterns
        if threshold < 0.0:
            return [(patterns[name], bound) for name, bound in bounds.items()]
        state_length = len(state)
        return [
            (patterns[name], bound)
            for name, bound in bounds.items()
            if 2.0 * bound / (len(patterns[name].flat) + state_length) >= threshold
        ]
