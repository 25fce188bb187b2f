"""Where a knowledge base lives in MongoDB: a pure function, so callers need no pymongo."""

from __future__ import annotations

import hashlib
import re

__all__ = ("database_name",)

_MAX_DB_NAME_BYTES = 63
_HASH_HEX = 32
_SAFE_DB_NAME = re.compile(r"[a-z0-9_-]{1,63}")
_UNSAFE_DB_CHARS = re.compile(r"[^a-z0-9_-]")
# Writing into these would touch the server's own data; ``clear()`` would even drop them.
_RESERVED_DB_NAMES = frozenset({"admin", "config", "local"})


def database_name(kb_id: str) -> str:
    """The MongoDB database holding ``kb_id``: the id itself when it is a safe name.

    Safe means lower-case ``[a-z0-9_-]``, at most 63 bytes and not a server database. Any
    other id (upper case too: MongoDB refuses names differing only in case) becomes a readable
    prefix, ``~`` and 32 hex digits of its SHA-256. Safe names never contain ``~``, so two
    different ids never share a database.
    """
    if _SAFE_DB_NAME.fullmatch(kb_id) and kb_id not in _RESERVED_DB_NAMES:
        return kb_id
    digest = hashlib.sha256(kb_id.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    prefix = _UNSAFE_DB_CHARS.sub("_", kb_id.lower())[: _MAX_DB_NAME_BYTES - _HASH_HEX - 1]
    return f"{prefix}~{digest}"
