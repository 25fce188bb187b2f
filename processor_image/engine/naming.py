"""Names derived from content: pattern hashes (spec §1.4) and vector symbols (spec §1.5)."""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Sequence

from processor_image.engine.errors import ObservationError

__all__ = (
    "PATTERN_PREFIX",
    "VECTOR_PREFIX",
    "bare_name",
    "check_observation",
    "pattern_hash",
    "vector_symbol",
)

PATTERN_PREFIX = "PTRN|"
VECTOR_PREFIX = "VECTOR|"


def pattern_hash(pattern_data: Sequence[Sequence[str]]) -> str:
    """SHA-1 of Python's ``str()`` of the list of events; the reference names patterns so."""
    text = str([list(event) for event in pattern_data])
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def bare_name(pattern_id: str) -> str:
    """The stored hash of a pattern id given with or without the ``PTRN|`` prefix."""
    return pattern_id.removeprefix(PATTERN_PREFIX)


def vector_symbol(vectors: Sequence[Sequence[float]]) -> str:
    """One symbol for all vectors of an observation: the hash of numpy's text of their sum.

    numpy is imported here, on the first vector, not with the module: it is a third of a
    processor's start-up time, and a session that never observes vectors never needs it.
    """
    import numpy as np

    try:
        arrays = [np.asarray(vector, dtype=np.float64) for vector in vectors]
        total = functools.reduce(operator.add, arrays)
    except (ValueError, TypeError) as exc:
        raise ObservationError(f"vectors cannot be added up: {exc}") from exc
    digest = hashlib.sha1(str(total).encode("utf-8"), usedforsecurity=False).hexdigest()
    return VECTOR_PREFIX + digest


def check_observation(vectors: Sequence[Sequence[float]]) -> None:
    """Raise the ``ObservationError`` observing these vectors would raise; change nothing.

    For callers that must refuse a batch before applying any of it. (``observe``'s other
    refusal, an empty ``unique_id``, never comes over HTTP: the service assigns one.)
    """
    if vectors:
        vector_symbol(vectors)
