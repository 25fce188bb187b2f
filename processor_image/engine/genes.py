"""Genes: tunable parameters, their start-up values and the one validator for them (spec §5).

``validate_genes`` is the only place a gene's type and range are checked: the processor uses
it at start-up (environment), on ``/genes/update`` and over the WebSocket, and on ``PUT
/state``; the session manager uses it on ``POST /session/create`` (through
``processor_image.contract``). It checks a whole request before anything is applied, so an
update is all or nothing (spec §5.2, project decision).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from processor_image.engine.errors import EngineError, InvalidGeneValue, UnknownGene

__all__ = ("GENE_ALIASES", "GENE_RULES", "GeneRule", "Genes", "validate_genes")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class Genes(msgspec.Struct, kw_only=True):
    """Live gene values; field names are the manifest keys of spec §5.1."""

    max_pattern_length: int = 0
    recall_threshold: float = 0.1
    max_predictions: int = 100
    persistence: int = 5
    smoothness: int = 3
    always_update_frequencies: bool = False
    sort: bool = True
    quiescence: int = 3
    auto_act_method: str = "none"
    auto_act_threshold: float = 0.8
    indexer_type: str = "VI"
    search_depth: int = 10
    process_predictions: bool = True

    _ENV: ClassVar[dict[str, str]] = {
        "max_pattern_length": "MAX_PATTERN_LENGTH",
        "recall_threshold": "RECALL_THRESHOLD",
        "max_predictions": "MAX_PREDICTIONS",
        "persistence": "PERSISTENCE",
        "smoothness": "SMOOTHNESS",
        "always_update_frequencies": "ALWAYS_UPDATE_FREQUENCIES",
        "sort": "SORT",
        "quiescence": "QUIESCENCE",
        "auto_act_method": "AUTO_ACT_METHOD",
        "auto_act_threshold": "AUTO_ACT_THRESHOLD",
        "indexer_type": "INDEXER_TYPE",
        "search_depth": "SEARCH_DEPTH",
        "process_predictions": "PROCESS_PREDICTIONS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Genes:
        """Start-up values from the spec's environment variables; a bad value is an EngineError."""
        values: dict[str, Any] = {}
        for field, var in cls._ENV.items():
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            values[field] = _parse(var, raw, GENE_RULES[field].kind)
        return cls(**validate_genes(values))

    def manifest(self) -> dict[str, Any]:
        """The start-up manifest: every gene by its manifest key."""
        return msgspec.structs.asdict(self)


@dataclass(frozen=True)
class GeneRule:
    """One gene's type and range, and whether it may change after start-up."""

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    updatable: bool = False

    def expected(self) -> str:
        """What a valid value looks like, in words (for messages and the create docs)."""
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            if self.choices:
                return " or ".join(f'"{choice}"' for choice in self.choices)
            return f"a string of at most {self.max_length} characters"
        noun = "an integer" if self.kind is int else "a number"
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f"{noun} >= {self.minimum:g}"
        return noun

    def check(self, name: str, value: Any) -> Any:
        """``value`` in this gene's type, or InvalidGeneValue naming what to send instead."""
        checked = _typed(self.kind, value)
        if checked is None or not self._in_range(checked):
            raise InvalidGeneValue(name, self.expected(), value)
        return checked

    def _in_range(self, value: Any) -> bool:
        if self.kind is str:
            if self.choices:
                return value in self.choices
            return self.max_length is None or len(value) <= self.max_length
        if self.kind is bool:
            return True
        if not math.isfinite(value):
            return False
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else math.inf
        return bool(low <= value <= high)


GENE_RULES: dict[str, GeneRule] = {
    "max_pattern_length": GeneRule(int, minimum=0, updatable=True),
    "recall_threshold": GeneRule(float, minimum=0, maximum=1, updatable=True),
    "max_predictions": GeneRule(int, minimum=0, updatable=True),  # 0: none (§4.9)
    "persistence": GeneRule(int, minimum=1, updatable=True),
    "smoothness": GeneRule(int, minimum=0, updatable=True),
    "always_update_frequencies": GeneRule(bool, updatable=True),
    "sort": GeneRule(bool, updatable=True),
    "quiescence": GeneRule(int, minimum=0),
    "auto_act_method": GeneRule(str, max_length=64),
    "auto_act_threshold": GeneRule(float),
    "indexer_type": GeneRule(str, choices=("VI",)),
    "search_depth": GeneRule(int, minimum=0),
    "process_predictions": GeneRule(bool),
}
"""Every gene by its manifest key (spec §5.1); only ``updatable`` ones change after start-up."""

GENE_ALIASES: dict[str, str] = {"SORT": "sort"}
"""Internal names accepted wherever the public one is (the reference's ``SORT``, quirk Q6)."""


def validate_genes(values: Mapping[str, Any], *, updating: bool = False) -> dict[str, Any]:
    """Check every gene in ``values``; return them by manifest key, in the gene's own type.

    Nothing is applied here, so a caller that applies the result only on success is all or
    nothing. ``updating`` admits only the genes that may change at run time (spec §5.1 ✔).

    Raises:
        UnknownGene: a name that is not a gene (or not an updatable one); the first in order.
        InvalidGeneValue: a value of the wrong type or out of range; the first in order.
    """
    checked: dict[str, Any] = {}
    for name, value in values.items():
        field = GENE_ALIASES.get(name, name)
        rule = GENE_RULES.get(field)
        if rule is None or (updating and not rule.updatable):
            raise UnknownGene(name)
        checked[field] = rule.check(name, value)
    return checked


def _typed(kind: type, value: Any) -> Any:
    """``value`` as ``kind`` when JSON could mean it (``3.0`` for an int, ``1`` for a float)."""
    if kind is bool or kind is str:
        return value if isinstance(value, kind) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            return None
        return int(value)
    return float(value)


def _parse(var: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise EngineError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    return raw
