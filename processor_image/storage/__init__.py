"""Knowledge-base stores behind the engine's ``KnowledgeBase`` port, chosen by name.

The MongoDB store (``processor_image.storage.mongodb``) is imported only when chosen: pymongo
is a sixth of a processor's start-up, and most sessions run on the memory store.
"""

from __future__ import annotations

from processor_image.engine.knowledge import KnowledgeBase
from processor_image.storage.errors import StorageError
from processor_image.storage.memory import (
    DEFAULT_PREDICTIONS_HISTORY,
    UNBOUNDED,
    MemoryKnowledgeBase,
)
from processor_image.storage.ops import OpClock

__all__ = (
    "DEFAULT_PREDICTIONS_HISTORY",
    "STORAGES",
    "UNBOUNDED",
    "MemoryKnowledgeBase",
    "StorageError",
    "open_knowledge_base",
)

STORAGES = ("memory", "mongodb")


def open_knowledge_base(
    storage: str,
    kb_id: str,
    mongo_url: str | None,
    ops: OpClock | None = None,
    *,
    predictions_history: int = DEFAULT_PREDICTIONS_HISTORY,
    predictions_ttl_s: int = 0,
) -> KnowledgeBase:
    """The store named by ``storage`` (the ``STORAGE`` setting) for ``kb_id``.

    ``ops`` (the runtime's request clock) lets a MongoDB store apply a replayed request once;
    the memory store ignores it (its knowledge travels in the checkpoint).
    ``predictions_history`` bounds the memory store's stored predictions (``UNBOUNDED``: keep
    all); ``predictions_ttl_s`` lets MongoDB expire them (0: never, as the reference).

    Raises:
        ValueError: an unknown ``storage``, or ``mongodb`` without a URL.
        StorageError: MongoDB could not be reached or prepared.
    """
    if storage == "memory":
        return MemoryKnowledgeBase(predictions_history)
    if storage == "mongodb":
        if not mongo_url:
            raise ValueError("STORAGE=mongodb needs MONGO_URL (e.g. mongodb://127.0.0.1:27017)")
        from processor_image.storage.mongodb import MongoKnowledgeBase

        return MongoKnowledgeBase(mongo_url, kb_id, ops=ops, predictions_ttl_s=predictions_ttl_s)
    raise ValueError(f"Unknown STORAGE {storage!r}: expected one of {', '.join(STORAGES)}")
