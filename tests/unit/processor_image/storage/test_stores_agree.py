"""Property: any sequence of learns leaves the memory and MongoDB stores with equal contents."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.json import encode

from processor_image.engine.knowledge import KnowledgeBase
from processor_image.engine.naming import pattern_hash
from processor_image.storage import MemoryKnowledgeBase
from processor_image.storage.mongodb import MongoKnowledgeBase, database_name
from tests.support.knowledge_bases import Client, new_kb_id

symbols = st.sampled_from(["a", "b", "c", "d", "VECTOR|f11d", "x.y"])
events = st.lists(symbols, min_size=1, max_size=3).map(sorted)
emotive_values = st.sampled_from([0.1, 0.25, 1.0, -0.5, 3.0])
emotives = st.none() | st.dictionaries(st.sampled_from(["joy", "fear", "a.b"]), emotive_values)
learns = st.lists(
    st.tuples(st.lists(events, min_size=1, max_size=3), emotives, st.integers(0, 3)),
    max_size=12,
)


def contents(kb: KnowledgeBase) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(kb.dump())
    data["patterns"].sort(key=lambda p: p["name"])
    data["symbols"].sort(key=lambda s: s["name"])
    return data


@pytest.mark.mongo
@settings(max_examples=30, deadline=None)
@given(learns)
def test_memory_and_mongodb_agree_after_any_learns_and_swap_dumps(
    mongo_client: Client, sequence: list[tuple[list[list[str]], dict[str, float] | None, int]]
) -> None:
    kb_id = new_kb_id()
    memory = MemoryKnowledgeBase()
    mongo = MongoKnowledgeBase("unused://", kb_id, client=mongo_client)
    try:
        for n, (pattern, emotive, persistence) in enumerate(sequence):
            name = pattern_hash(pattern)
            assert memory.learn(name, pattern, emotive, persistence) == mongo.learn(
                name, pattern, emotive, persistence
            )
            for kb in (memory, mongo):
                kb.store_predictions(
                    f"u{n % 3}", encode([{"name": name, "emotives": emotive or {}}])
                )
        assert contents(mongo) == contents(memory)
        assert mongo.pattern_count() == memory.pattern_count()
        assert mongo.symbol_count() == memory.symbol_count()
        # Each store's dump loads into the other kind unchanged (hibernation moves dumps).
        reloaded = MemoryKnowledgeBase()
        reloaded.load(mongo.dump())
        mongo.load(memory.dump())
        assert contents(reloaded) == contents(mongo) == contents(memory)
    finally:
        mongo.close()
        mongo_client.drop_database(database_name(kb_id))
