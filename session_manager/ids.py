"""Random ids that name things (requests, observations), never secrets.

Drawn from a generator seeded once from the system's randomness, so no two processes share a
sequence and no id costs a system call (the proxy makes one or two per request).
"""

from __future__ import annotations

import os
import random

__all__ = ("random_hex",)

_ids = random.Random(os.urandom(32))  # noqa: S311 - names, not secrets


def random_hex() -> str:
    """128 random bits as 32 hex digits (a uuid4's worth)."""
    return f"{_ids.getrandbits(128):032x}"
