"""The memory store keeps the last ``PREDICTIONS_HISTORY`` prediction records (spec §4.10 grows
without bound; a session's memory must grow with its knowledge, not its observations)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgspec
import pytest
from msgspec.json import encode

from processor_image.engine import Processor
from processor_image.storage import UNBOUNDED, MemoryKnowledgeBase


def record(n: int) -> list[dict[str, Any]]:
    return [{"name": f"p{n}", "potential": float(n)}]


def store(kb: MemoryKnowledgeBase, *ids: str) -> None:
    for n, unique_id in enumerate(ids):
        kb.store_predictions(unique_id, encode(record(n)))


def retained(kb: MemoryKnowledgeBase) -> list[str]:
    return [r.unique_id for r in kb.dump().predictions]


def test_only_the_last_n_records_are_kept_in_the_order_stored() -> None:
    kb = MemoryKnowledgeBase(predictions_history=3)
    store(kb, *(f"u{n}" for n in range(10)))
    assert retained(kb) == ["u7", "u8", "u9"]
    assert [kb.find_predictions(f"u{n}") for n in (7, 8, 9)] == [record(7), record(8), record(9)]


def test_an_evicted_id_is_found_no_more_like_an_unknown_one() -> None:
    kb = MemoryKnowledgeBase(predictions_history=2)
    store(kb, "a", "b", "c")
    assert kb.find_predictions("a") is None
    assert kb.find_predictions("a") == kb.find_predictions("never-stored")


def test_a_repeated_id_finds_its_oldest_retained_record() -> None:
    kb = MemoryKnowledgeBase(predictions_history=3)
    store(kb, "x", "y", "x", "z")  # the first x (record 0) is evicted, the second is record 2
    assert kb.find_predictions("x") == record(2)
    store(kb, "w", "v")  # the second x goes too
    assert kb.find_predictions("x") is None
    assert retained(kb) == ["z", "w", "v"]


def test_unbounded_keeps_every_record_as_the_reference() -> None:
    kb = MemoryKnowledgeBase(predictions_history=UNBOUNDED)
    store(kb, *(f"u{n}" for n in range(2500)))
    assert len(retained(kb)) == 2500
    assert kb.find_predictions("u0") == record(0)


def test_the_default_bound_is_a_thousand_records() -> None:
    kb = MemoryKnowledgeBase()
    store(kb, *(f"u{n}" for n in range(1200)))
    assert len(retained(kb)) == 1000
    assert kb.find_predictions("u199") is None
    assert kb.find_predictions("u200") == record(200)


def test_a_dump_carries_only_the_retained_records_and_loads_them_back() -> None:
    kb = MemoryKnowledgeBase(predictions_history=3)
    store(kb, "a", "b", "a", "c", "d")
    dump = kb.dump()
    assert [r.unique_id for r in dump.predictions] == ["a", "c", "d"]
    again = MemoryKnowledgeBase(predictions_history=3)
    again.load(dump)
    assert again.dump() == dump
    assert again.find_predictions("a") == record(2)
    assert again.find_predictions("b") is None


def test_loading_a_longer_history_keeps_its_newest_records() -> None:
    unbounded = MemoryKnowledgeBase(predictions_history=UNBOUNDED)
    store(unbounded, *(f"u{n}" for n in range(10)))
    bounded = MemoryKnowledgeBase(predictions_history=4)
    bounded.load(unbounded.dump())
    assert retained(bounded) == ["u6", "u7", "u8", "u9"]


def test_clear_forgets_the_history() -> None:
    kb = MemoryKnowledgeBase(predictions_history=3)
    store(kb, "a", "b")
    kb.clear()
    assert retained(kb) == []
    assert kb.find_predictions("a") is None


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="predictions_history"):
        MemoryKnowledgeBase(predictions_history=-1)


def test_a_processor_answers_an_evicted_observation_with_no_predictions() -> None:
    """What a client sees: ``?unique_id=`` of an observe older than the history gives ``[]``."""
    p = Processor(processor_id="p1", kb=MemoryKnowledgeBase(predictions_history=2))
    for symbol in ("a", "b", "c"):
        p.observe([symbol], unique_id=f"learn-{symbol}")
    p.learn()
    p.observe(["a"], unique_id="o0")
    for n in range(1, 4):
        p.observe(["b"], unique_id=f"o{n}")
    assert p.predictions("o1") == []  # evicted: o1, o2, o3 predicted; only o2, o3 kept
    kept = p.predictions("o3")
    assert kept
    assert kept == p.predictions()


def test_a_kept_record_costs_its_compressed_size_not_its_json_size() -> None:
    """A dense record is ~50 KB of JSON that compresses ~8x; keeping 1,000 must not pin the JSON
    size each (zstandard's output object keeps an input-sized allocation unless copied)."""
    predictions = [
        {"name": f"{n:040x}", "sequence": [["s01", "s02"], ["s03"]] * 20, "potential": n / 7}
        for n in range(100)
    ]
    json_size = len(msgspec.json.encode(predictions))
    kb = MemoryKnowledgeBase(predictions_history=1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(50):
            kb.store_predictions(f"u{n}", encode(predictions))
        per_record = (tracemalloc.get_traced_memory()[0] - before) / 50
    finally:
        tracemalloc.stop()
    assert json_size > 40_000
    assert per_record < json_size / 4
