"""Genes: tunable parameters, their start-up values and update rules (spec §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from processor_image.engine.errors import EngineError, InvalidGeneValue, UnknownGene

__all__ = ("UPDATABLE_GENES", "Genes")

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
        defaults = cls()
        for field, var in cls._ENV.items():
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            values[field] = _parse(var, raw, type(getattr(defaults, field)))
        return cls(**values)

    def manifest(self) -> dict[str, Any]:
        """The start-up manifest: every gene by its manifest key."""
        return msgspec.structs.asdict(self)

    def update(self, name: str, value: Any) -> None:
        """Apply one update by its accepted name (the ✔ rows of §5.1, plus ``SORT``)."""
        field = UPDATABLE_GENES.get(name)
        if field is None:
            raise UnknownGene(name)
        kind = type(getattr(Genes(), field))
        setattr(self, field, _check(name, value, kind))


# Update name -> field. Lower-case ``sort`` is rejected on purpose (reference quirk Q6).
UPDATABLE_GENES: dict[str, str] = {
    "max_pattern_length": "max_pattern_length",
    "recall_threshold": "recall_threshold",
    "max_predictions": "max_predictions",
    "persistence": "persistence",
    "smoothness": "smoothness",
    "always_update_frequencies": "always_update_frequencies",
    "SORT": "sort",
}


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


def _check(name: str, value: Any, kind: type) -> Any:
    """Reject values that would break later comparisons (the reference stored them verbatim)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise InvalidGeneValue(name, "a boolean")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidGeneValue(name, "a number" if kind is float else "an integer")
    if kind is int and not isinstance(value, int):
        if not float(value).is_integer():
            raise InvalidGeneValue(name, "an integer")
        return int(value)
    return value
