"""The prediction pipeline (spec §4): candidates, matching, ensemble metrics, ranking."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from processor_image.engine.compiled import EMPTY, CompiledIndex
from processor_image.engine.emotives import average
from processor_image.engine.index import PatternIndex
from processor_image.engine.knowledge import KnowledgeBase
from processor_image.engine.matching import Match, Matcher

__all__ = ("Prediction", "predict", "predict_json")

Prediction = dict[str, Any]
"""A prediction object (the 22 keys of spec §4.8); inside the engine ``name`` is bare."""
_encode = msgspec.json.Encoder().encode


def predict_json(
    state: Sequence[str],
    index: PatternIndex | CompiledIndex,
    kb: KnowledgeBase,
    *,
    recall_threshold: float,
    max_predictions: int,
    exhaustive: bool = False,
    counts: Counter[str] | None = None,
) -> bytes:
    """``predict``'s list as compact JSON (bare names), as the knowledge base stores it.

    A ``CompiledIndex`` computes and writes it in the compiled core, byte for byte what
    msgspec writes for ``predict``'s list: the predictions stay bytes until someone reads them.
    """
    if isinstance(index, CompiledIndex):
        return index.predict_json(
            state,
            kb,
            recall_threshold=recall_threshold,
            max_predictions=max_predictions,
            exhaustive=exhaustive,
        )
    found = predict(
        state,
        index,
        kb,
        recall_threshold=recall_threshold,
        max_predictions=max_predictions,
        exhaustive=exhaustive,
        counts=counts,
    )
    return _encode(found) if found else EMPTY


def predict(
    state: Sequence[str],
    index: PatternIndex,
    kb: KnowledgeBase,
    *,
    recall_threshold: float,
    max_predictions: int,
    exhaustive: bool = False,
    counts: Counter[str] | None = None,
) -> list[Prediction]:
    """Predictions for ``state``, equal to matching it against every stored pattern.

    ``exhaustive=True`` matches every pattern without the index; it exists so tests can
    show that the index changes nothing. ``counts`` (symbol occurrences in ``state``) may be
    passed when the caller keeps them already. This is the reference the compiled core
    (``predict_json`` on a ``CompiledIndex``) is tested against.
    """
    if max_predictions <= 0:
        return []
    if exhaustive:
        candidates = [(pattern, -1) for pattern in index]
    else:
        candidates = index.candidates(state, recall_threshold, counts)
    if not candidates:
        return []
    matcher = Matcher(state, recall_threshold)
    matched = [matcher.match(pattern, bound) for pattern, bound in candidates]
    survivors = [m for m in matched if m is not None]
    if not survivors:
        return []
    predictions = _ensemble(survivors, state, kb)
    predictions.sort(key=lambda p: (-p["potential"], p["name"]))
    return predictions[:max_predictions]


def _ensemble(survivors: list[Match], state: Sequence[str], kb: KnowledgeBase) -> list[Prediction]:
    """Fill in the information-theoretic fields (spec §4.7) for every survivor."""
    records = kb.pattern_records([m.pattern.name for m in survivors])
    universe: set[str] = set()
    for m in survivors:
        universe.update(m.matches)
        universe.update(m.missing)
    members = kb.member_frequencies(universe)
    totals = kb.totals()
    symbol_count = kb.symbol_count()
    t_sip = totals.total_symbols_in_patterns_frequencies
    t_pf = totals.total_pattern_frequencies
    probability: dict[str, float] = {}
    if t_sip > 0:
        for symbol in universe:
            if symbol in members:
                probability[symbol] = members[symbol] / t_sip
    frequencies = {
        m.pattern.name: records[m.pattern.name].frequency if m.pattern.name in records else 0
        for m in survivors
    }
    f_ens = sum(frequencies[m.pattern.name] for m in survivors)
    state_counts = _count(state)
    # Per-symbol terms, computed once for the whole ensemble (same operations, same sums).
    surprisal: dict[str, float] = {}
    spread: dict[str, float] = {}
    log_p: dict[str, float] = {}
    for symbol in universe:
        q = probability.get(symbol, 0.0)
        surprisal[symbol] = -q * math.log2(q) if q > 0 else 0.0
        spread[symbol] = _e(q, symbol_count)
        log_p[symbol] = math.log10(q if q > 0 else 1e-10)
    out: list[Prediction] = []
    for m in survivors:
        name = m.pattern.name
        record = records.get(name)
        frequency = frequencies[name]
        present = m.present_flat
        present_counts = _count(present)
        itfdf = _itfdf(present_counts, state_counts, probability, frequency, f_ens)
        entropy = sum([surprisal[symbol] for symbol in present])
        size = len(present)
        hamiltonian = sum([_e(present_counts[symbol] / size, symbol_count) for symbol in present])
        grand = sum([spread[symbol] for symbol in present_counts])
        p_h = frequency / t_pf if t_pf else 0.0
        product = 10 ** sum([log_p[symbol] for symbol in present]) if present else 0.0
        fragment_term = 0.0 if m.fragmentation == -1 else 1 / (m.fragmentation + 1)
        potential = (m.evidence + m.confidence) * m.snr + itfdf + fragment_term
        out.append(
            {
                "type": "prototypical",
                "name": name,
                "frequency": frequency,
                "emotives": average(record.emotives) if record is not None else {},
                "matches": m.matches,
                "past": m.past,
                "present": m.present,
                "missing": m.missing,
                "extras": m.extras,
                "potential": round(potential, 12),
                "evidence": m.evidence,
                "similarity": m.similarity,
                "fragmentation": m.fragmentation,
                "snr": m.snr,
                "entropy": round(entropy, 12),
                "hamiltonian": round(hamiltonian, 12),
                "grand_hamiltonian": round(grand, 12),
                "confluence": round(p_h * (1 - product), 12),
                "sequence": m.pattern.events,
                "future": m.future,
                "confidence": m.confidence,
                "itfdf_similarity": itfdf,
            }
        )
    return out


def _count(symbols: Sequence[str]) -> dict[str, int]:
    """Occurrences per symbol (``Counter`` is several times slower on short lists)."""
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    return counts


def _e(q: float, n: int) -> float:
    return -q * math.log(q) / math.log(n) if q > 0 and n > 1 else 0.0


def _itfdf(
    present_counts: Mapping[str, int],
    state_counts: Mapping[str, int],
    probability: Mapping[str, float],
    frequency: int,
    f_ens: int,
) -> float:
    """``1 - cosine distance · frequency / F_ens`` over probability-weighted symbol counts.

    The sums run over ``set(present) | set(state)`` in a fixed order, the state's symbols as
    first seen, then the present's others: a set's order follows the strings' hashes, which
    differ between processes, and a different order can change the last bits of a sum.
    """
    if f_ens == 0:
        return 0.0
    dot = uu = vv = 0.0
    for symbol, in_state in state_counts.items():
        p = probability.get(symbol, 0.0)
        u = p * in_state
        v = p * present_counts.get(symbol, 0)
        dot += u * v
        uu += u * u
        vv += v * v
    for symbol, in_present in present_counts.items():
        if symbol not in state_counts:  # u is 0 here: only vv grows
            v = probability.get(symbol, 0.0) * in_present
            vv += v * v
    if uu == 0.0 or vv == 0.0:
        distance = 1.0
    else:
        distance = 1.0 - dot / math.sqrt(uu * vv)
        distance = 1.0 if math.isnan(distance) else min(max(distance, 0.0), 2.0)
    return round(1 - distance * frequency / f_ens, 12)
