"""The learned patterns inside the compiled core, and predictions computed there (spec §4).

Same contract as ``PatternIndex`` + ``predictions.predict_json``: the knowledge base stays the
authority on frequencies and symbol statistics, and is asked the same questions in the same
order; the core does the matching and the arithmetic and writes the JSON, the glue is a
constant number of calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from processor_image.engine.emotives import average
from processor_image.engine.knowledge import KnowledgeBase

if TYPE_CHECKING:
    from processor_image.engine import _core

__all__ = ("EMPTY", "CompiledIndex")

EMPTY = b"[]"
"""No predictions, encoded."""
_encode = msgspec.json.Encoder().encode


class CompiledIndex:
    """Patterns by name, interned into the core's arrays; adding a known name changes nothing."""

    def __init__(self, core: _core.Core) -> None:
        self._core = core
        self.add: Callable[[str, Sequence[Sequence[str]]], object] = core.add
        """Index a pattern: the core's own method, so a learn runs no Python frame for it."""

    def __len__(self) -> int:
        return len(self._core)

    def clear(self) -> None:
        """Forget every pattern (``clear-all``)."""
        self._core.clear()

    def predict_json(
        self,
        state: Sequence[str],
        kb: KnowledgeBase,
        *,
        recall_threshold: float,
        max_predictions: int,
        exhaustive: bool = False,
    ) -> bytes:
        """What ``predictions.predict_json`` returns for the same arguments, byte for byte."""
        if max_predictions <= 0:
            return EMPTY
        run = self._core.match(state, recall_threshold, exhaustive)
        if run is None:
            return EMPTY
        records = kb.pattern_records(run.names())
        members = kb.member_frequencies(run.universe())
        totals = kb.totals()
        return run.predictions(
            records,
            members,
            totals.total_pattern_frequencies,
            totals.total_symbols_in_patterns_frequencies,
            kb.symbol_count(),
            max_predictions,
            average,
            _encode,
        )
