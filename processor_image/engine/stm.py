"""Short-term memory: the events observed since the last learn, and their flattening (spec §1.3).

The flat state and its symbol counts are kept up to date as events arrive, so that predicting
costs nothing per event already held when no pattern shares a symbol with the state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

__all__ = ("ShortTermMemory",)


class ShortTermMemory:
    """Events in order, the flat state and per-symbol counts."""

    def __init__(self, events: Iterable[list[str]] = ()) -> None:
        self._events: list[list[str]] = []
        self._flat: list[str] = []
        self._counts: Counter[str] = Counter()
        for event in events:
            self.append(event)

    def __len__(self) -> int:
        return len(self._events)

    def append(self, event: list[str]) -> None:
        """Add one non-empty event."""
        self._events.append(list(event))
        self._flat.extend(event)
        self._counts.update(event)

    def take(self) -> list[list[str]]:
        """Return the events and empty STM (learn)."""
        events = self._events
        self.clear()
        return events

    def clear(self) -> None:
        """Forget every event (the counts emptied in place: a new ``Counter`` costs ~1 us)."""
        self._events, self._flat = [], []
        self._counts.clear()

    @property
    def events(self) -> list[list[str]]:
        """A copy of the events."""
        return [list(event) for event in self._events]

    @property
    def last(self) -> list[str]:
        """The newest event."""
        return list(self._events[-1])

    @property
    def state(self) -> list[str]:
        """``flat(STM)``: what predictions are matched against (not a copy: do not modify)."""
        return self._flat

    @property
    def counts(self) -> Counter[str]:
        """Occurrences of each symbol in the state (not a copy: do not modify)."""
        return self._counts
