"""v3 session configuration: its defaults, its two validations, and the classic genes it sets.

v3 keeps 22 keys per session (§4.2 of the v3 reference). Seven are classic KATO genes and reach
the session's processor as genes (``sort_symbols`` is the gene ``sort``); the others are kept
in the session's v3 record and reported back as given: this processor has no filter pipeline,
token matching or ranking choice, so they change nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processor_image import contract

__all__ = (
    "RANK_SORT_ALGOS",
    "config_errors",
    "creation_overrides",
    "effective",
    "genes_of",
    "update_changes",
    "update_of",
)

RANK_SORT_ALGOS = (
    "potential",
    "similarity",
    "evidence",
    "confidence",
    "snr",
    "fragmentation",
    "frequency",
    "normalized_entropy",
    "global_normalized_entropy",
    "itfdf_similarity",
    "confluence",
    "predictive_information",
    "bayesian_posterior",
    "bayesian_prior",
    "bayesian_likelihood",
    "tfidf_score",
    "weighted_similarity",
    "weighted_evidence",
    "weighted_confidence",
    "weighted_snr",
)
_INDEXERS = ("VI", "LSH", "ANNOY", "FAISS")
_FILTERS = ("minhash", "length", "jaccard", "bloom", "rapidfuzz")

DEFAULTS: dict[str, Any] = {
    "max_pattern_length": 0,
    "persistence": 5,
    "recall_threshold": 0.1,
    "max_predictions": 100,
    "sort_symbols": True,
    "indexer_type": "VI",
    "process_predictions": True,
    "stm_mode": "CLEAR",
    "use_token_matching": True,
    "rank_sort_algo": "potential",
    "filter_pipeline": [],
    "length_min_ratio": 0.5,
    "length_max_ratio": 2.0,
    "jaccard_threshold": 0.3,
    "jaccard_min_overlap": 2,
    "minhash_threshold": 0.7,
    "minhash_bands": 20,
    "minhash_rows": 5,
    "minhash_num_hashes": 100,
    "bloom_false_positive_rate": 0.01,
    "max_candidates_per_stage": 100000,
    "enable_filter_metrics": True,
}
"""The 22 keys of the effective configuration, in v3's order, with v3's defaults."""
_OPTIONAL = ("fuzzy_token_threshold", "affinity_emotive")
"""Shown only once a session set them."""
SESSION_KEYS = frozenset(DEFAULTS) | frozenset(_OPTIONAL)

_GENES = {
    "recall_threshold": "recall_threshold",
    "max_pattern_length": "max_pattern_length",
    "persistence": "persistence",
    "max_predictions": "max_predictions",
    "sort_symbols": "sort",
    "process_predictions": "process_predictions",
}
"""v3 key -> classic gene. ``indexer_type`` is kept only (this processor has one indexer);
``process_predictions`` is a start-up gene: set at creation, kept only on an update."""
_START_ONLY = frozenset({"process_predictions"})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _between(low: float, high: float | None) -> Any:
    return lambda v: _number(v) and low <= v and (high is None or v <= high)


def _int_between(low: int, high: int | None) -> Any:
    return lambda v: _integer(v) and low <= v and (high is None or v <= high)


_AT_CREATION: dict[str, Any] = {
    "recall_threshold": _between(0.0, 1.0),
    "max_pattern_length": _int_between(0, None),
    "persistence": _int_between(1, 100),
    "max_predictions": _int_between(1, 10000),
    "indexer_type": lambda v: v in _INDEXERS,
    "fuzzy_token_threshold": _between(0.0, 1.0),
    "rank_sort_algo": lambda v: v in RANK_SORT_ALGOS,
    "filter_pipeline": lambda v: isinstance(v, list) and all(f in _FILTERS for f in v),
    "length_min_ratio": _between(0.0, 1.0),
    "length_max_ratio": _between(1.0, None),
    "jaccard_threshold": _between(0.0, 1.0),
    "jaccard_min_overlap": _int_between(1, None),
    "minhash_threshold": _between(0.0, 1.0),
    "minhash_bands": _int_between(1, 100),
    "minhash_rows": _int_between(1, 20),
    "minhash_num_hashes": _int_between(10, 256),
    "bloom_false_positive_rate": _between(0.0001, 0.1),
    "max_candidates_per_stage": _int_between(100, None),
}
"""v3's range checks at creation (§4.3); one failure drops every override."""

_BOOL = "Must be a boolean (true/false)"
_ON_UPDATE: dict[str, tuple[Any, str]] = {
    "recall_threshold": (_between(0.0, 1.0), "Must be a number between 0.0 and 1.0"),
    "persistence": (_int_between(1, 100), "Must be an integer between 1 and 100"),
    "max_pattern_length": (_int_between(0, None), "Must be a non-negative integer"),
    "max_predictions": (_int_between(1, 10000), "Must be an integer between 1 and 10000"),
    "indexer_type": (lambda v: v in _INDEXERS, "Must be one of: VI, LSH, ANNOY, FAISS"),
    "stm_mode": (lambda v: isinstance(v, str), "Must be a string"),
    "sort": (lambda v: isinstance(v, bool), _BOOL),
    "process_predictions": (lambda v: isinstance(v, bool), _BOOL),
    "use_token_matching": (lambda v: isinstance(v, bool), _BOOL),
    "rank_sort_algo": (
        lambda v: v in RANK_SORT_ALGOS,
        "Must be one of: " + ", ".join(RANK_SORT_ALGOS),
    ),
}
"""v3's checks on ``POST /sessions/{id}/config`` (§4.4): only these keys are checked."""


def _normalised(overrides: dict[str, Any]) -> dict[str, Any]:
    if "stm_mode" in overrides and overrides["stm_mode"] not in ("CLEAR", "ROLLING"):
        overrides["stm_mode"] = "CLEAR"
    return overrides


def _genes_refusal(genes: Mapping[str, Any]) -> dict[str, str]:
    """The processor's own checks of ``genes`` (key -> message); empty when they pass."""
    try:
        contract.validate_genes(genes)
    except contract.GeneError as exc:
        return {"genes": exc.message}
    return {}


def creation_overrides(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides a create keeps: every known key, or none when any value fails (v3 quirk)."""
    if not config:
        return {}
    kept = {key: value for key, value in config.items() if key in SESSION_KEYS}
    for key, value in kept.items():
        check = _AT_CREATION.get(key)
        if check is not None and not check(value):
            return {}
    if _genes_refusal(genes_of(kept)):
        return {}
    return _normalised(kept)


def update_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The update a ``POST …/config`` body carries: its ``config`` value, else the body."""
    inner = body.get("config")
    return inner if isinstance(inner, Mapping) else body


def config_errors(update: Mapping[str, Any]) -> dict[str, str]:
    """v3's validation errors for an update (key -> message); empty when it may be applied."""
    errors = {
        key: message
        for key, (check, message) in _ON_UPDATE.items()
        if key in update and not check(update[key])
    }
    if errors:
        return errors
    return _genes_refusal(genes_of(update_changes({}, update), updating=True))


def update_changes(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The session's overrides after a valid update: session keys stored as given.

    ``use_token_matching`` without ``sort_symbols`` sets ``sort_symbols`` too (v3 couples them
    on update only).
    """
    changed = dict(current)
    for key, value in update.items():
        if key in SESSION_KEYS:
            changed[key] = value
    if "use_token_matching" in update and "sort_symbols" not in update:
        changed["sort_symbols"] = update["use_token_matching"]
    return _normalised(changed)


def effective(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The 22 keys (each override or default), then the optional ones a session set."""
    shown = {key: overrides.get(key, default) for key, default in DEFAULTS.items()}
    shown.update({key: overrides[key] for key in _OPTIONAL if key in overrides})
    return shown


def genes_of(overrides: Mapping[str, Any], *, updating: bool = False) -> dict[str, Any]:
    """The classic genes the overrides set, by gene name (what the processor is given).

    ``updating``: only the genes a running processor takes (``/genes/update``).
    """
    return {
        gene: overrides[key]
        for key, gene in _GENES.items()
        if key in overrides and not (updating and key in _START_ONLY)
    }
