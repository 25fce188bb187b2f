"""Matching one pattern against the state (spec §4.3, §4.4, §4.6): alignment and event fields."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from processor_image.engine.index import IndexedPattern

__all__ = ("Match", "Matcher")


class Match:
    """What one surviving candidate contributes before the ensemble metrics."""

    __slots__ = (
        "blocks",
        "confidence",
        "evidence",
        "extras",
        "fragmentation",
        "future",
        "matches",
        "missing",
        "past",
        "pattern",
        "present",
        "present_flat",
        "similarity",
        "snr",
    )

    def __init__(
        self,
        pattern: IndexedPattern,
        similarity: float,
        blocks: int,
        matches: list[str],
        past_length: int,
        present_length: int,
        extras: list[str],
    ) -> None:
        self.pattern = pattern
        self.similarity = similarity
        self.blocks = blocks
        self.matches = matches
        self.extras = extras
        self.past, self.present, self.future = _segment(
            pattern.events, past_length, past_length + present_length, matches
        )
        self.present_flat = [symbol for event in self.present for symbol in event]
        matched = set(matches)
        self.missing = [symbol for symbol in self.present_flat if symbol not in matched]
        length = len(pattern.flat)
        self.evidence = len(matches) / length if length else 0.0
        self.confidence = len(matches) / len(self.present_flat) if self.present_flat else 0.0
        self.fragmentation = float(blocks - 1)
        signal, noise = 2 * len(matches), len(extras)
        self.snr = (signal - noise) / (signal + noise) if signal + noise else 0.0


class Matcher:
    """Matches many patterns against one state, reusing difflib's cached index of the state.

    ``SequenceMatcher(None, pattern, state, autojunk=False)`` is exactly the reference's
    junk-free vendored difflib; the state is the second sequence, so its index is built once.
    """

    def __init__(self, state: Sequence[str], threshold: float) -> None:
        self.state = list(state)
        self.threshold = threshold
        self._matcher = SequenceMatcher(None, (), self.state, autojunk=False)
        self._first: dict[str, int] = {}
        for j, symbol in enumerate(self.state):
            self._first.setdefault(symbol, j)

    def match(self, pattern: IndexedPattern, bound: int = -1) -> Match | None:
        """The candidate's match, or None when it falls below the recall threshold.

        ``bound`` is the index's bound on the matched total; when it is 1 the two sequences
        share exactly one symbol occurrence, and difflib's answer is known without running it.
        """
        if bound == 1:
            return self._single(pattern)
        matcher, state = self._matcher, self.state
        flat = pattern.flat
        matcher.set_seq1(flat)
        blocks = matcher.get_matching_blocks()[:-1]
        total = sum(block.size for block in blocks)
        similarity = 2.0 * total / (len(flat) + len(state))
        if not blocks:
            if self.threshold != 0.0:
                return None
            return Match(pattern, similarity, 0, [], 0, len(flat), list(state))
        if similarity < self.threshold:
            return None
        matches = [symbol for i, j, n in blocks for symbol in state[j : j + n]]
        start = blocks[0].a
        end = blocks[-1].a + blocks[-1].size
        present_flat = flat[start:end]
        matcher.set_seq1(present_flat)
        extras = [
            symbol
            for tag, _i1, _i2, j1, j2 in matcher.get_opcodes()
            if tag in ("insert", "replace")
            for symbol in state[j1:j2]
        ]
        return Match(pattern, similarity, len(blocks), matches, start, end - start, extras)

    def _single(self, pattern: IndexedPattern) -> Match | None:
        """One shared occurrence: difflib finds one block at the first occurrence in each."""
        flat, state = pattern.flat, self.state
        similarity = 2.0 / (len(flat) + len(state))
        if similarity < self.threshold:
            return None
        first = self._first
        for i, symbol in enumerate(flat):
            j = first.get(symbol)
            if j is not None:
                extras = state[:j] + state[j + 1 :]
                return Match(pattern, similarity, 1, [symbol], i, 1, extras)
        raise AssertionError("bound 1 without a shared symbol")  # pragma: no cover


def _segment(
    events: list[list[str]], p0: int, p1: int, matches: list[str]
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Cut the pattern's events into past, present and future (spec §4.6, fix-up rule included)."""
    e1 = _events_covering(events, p0)
    e2 = _events_covering(events, p1)
    past, present, future = events[:e1], events[e1:e2], events[e2:]
    if past and matches and matches[0] in past[-1]:
        present = [past[-1], *present]
        past = past[:-1]
    return past, present, future


def _events_covering(events: list[list[str]], symbols: int) -> int:
    """The fewest leading events whose sizes sum to at least ``symbols`` (0 for 0)."""
    if symbols <= 0:
        return 0
    covered = 0
    for count, event in enumerate(events, start=1):
        covered += len(event)
        if covered >= symbols:
            return count
    return len(events)
