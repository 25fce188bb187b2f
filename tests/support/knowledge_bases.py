"""Names for the knowledge-base store tests: a fresh kb id, and the types the fixtures give."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pymongo import MongoClient

from processor_image.engine.knowledge import KnowledgeBase

__all__ = ("Client", "MakeKb", "new_kb_id")

MakeKb = Callable[..., KnowledgeBase]
"""``make_kb(kb_id=None)``: a store of the parametrised kind."""

Client = MongoClient[dict[str, Any]]


def new_kb_id() -> str:
    """A kb id no other test uses (its MongoDB database is dropped after the test)."""
    return f"test_{uuid.uuid4().hex[:16]}"
