"""Knowledge-base helpers for tests: a fresh kb id, fixture types, a MongoDB kb's contents."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pymongo import MongoClient

from processor_image.engine.knowledge import KnowledgeBase
from processor_image.storage.naming import database_name

__all__ = ("Client", "MakeKb", "knowledge", "new_kb_id")

MakeKb = Callable[..., KnowledgeBase]
"""``make_kb(kb_id=None)``: a store of the parametrised kind."""

Client = MongoClient[dict[str, Any]]


def new_kb_id() -> str:
    """A kb id no other test uses (its MongoDB database is dropped after the test)."""
    return f"test_{uuid.uuid4().hex[:16]}"


def knowledge(mongo_url: str, kb_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every counted document of a MongoDB knowledge base, without ids and op marks."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    with client:
        db = client[database_name(kb_id)]
        return {
            name: sorted(db[name].find({}, {"_id": 0, "ops": 0}), key=repr)
            for name in ("patterns_kb", "symbols_kb", "metadata")
        }
