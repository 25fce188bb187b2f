"""Emotive averaging (spec §1.6): each key is averaged over the dicts that hold it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ("average",)


def average(dicts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-key mean in first-seen key order; ``average([])`` is ``{}``."""
    values: dict[str, list[float]] = {}
    for emotives in dicts:
        for key, value in emotives.items():
            values.setdefault(key, []).append(value)
    return {key: float(sum(vals) / len(vals)) for key, vals in values.items()}
