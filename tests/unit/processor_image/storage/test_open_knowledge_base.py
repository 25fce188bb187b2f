"""Choosing a store by the STORAGE setting."""

from __future__ import annotations

import pytest

from processor_image.storage import MemoryKnowledgeBase, open_knowledge_base


def test_memory_storage_opens_a_memory_store_without_a_url() -> None:
    kb = open_knowledge_base("memory", "p1", None)
    assert isinstance(kb, MemoryKnowledgeBase)
    assert kb.persistent is False


@pytest.mark.parametrize(
    ("storage", "url", "message"),
    [("mongodb", None, "needs MONGO_URL"), ("redis", "x", "Unknown STORAGE 'redis'")],
)
def test_open_knowledge_base_rejects_bad_settings(
    storage: str, url: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        open_knowledge_base(storage, "p1", url)
