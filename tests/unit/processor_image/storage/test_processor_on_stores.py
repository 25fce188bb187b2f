"""The engine gives the same answers on every store, and a MongoDB KB survives a restart."""

from __future__ import annotations

from typing import Any

import pytest

from processor_image.engine import Genes, Processor
from processor_image.engine.knowledge import KnowledgeBase
from processor_image.storage import MemoryKnowledgeBase
from tests.support.knowledge_bases import MakeKb, new_kb_id

SEQUENCES: list[list[str | list[str]]] = [
    ["hello", "world", "again"],
    [["a", "b"], "c", "d"],
    ["hello", "there", "world"],
    ["x", ["y", "z"], "hello"],
]


def drive(processor: Processor) -> list[Any]:
    """Learn the sequences (with emotives and a vector), then observe probes; every answer."""
    answers: list[Any] = []
    n = 0
    for round_ in range(2):
        for sequence in SEQUENCES:
            for event in sequence:
                n += 1
                strings = [event] if isinstance(event, str) else event
                processor.observe(
                    strings,
                    vectors=[[0.5, 0.5]] if event == "c" else (),
                    emotives={"joy": 0.1 * n, "calm": 0.0},
                    unique_id=f"learn{n}",
                )
            answers.append(processor.learn())
        answers.append(round_)
    for probe in (["hello"], ["world"], ["a", "b"], ["y"]):
        n += 1
        processor.observe(probe, unique_id=f"probe{n}")
        answers.append(processor.predictions())
    answers.append(processor.predictions(unique_id=f"probe{n}"))
    answers.append(processor.predictions(unique_id="unknown"))
    answers.append(processor.get_pattern(answers[0]))
    answers.append(processor.pattern_count())
    return answers


def test_processor_answers_match_the_memory_store(make_kb: MakeKb) -> None:
    expected = drive(Processor(processor_id="p1", kb=MemoryKnowledgeBase(), genes=Genes()))
    assert drive(Processor(processor_id="p1", kb=make_kb(), genes=Genes())) == expected
    assert expected[-1] == 4


@pytest.mark.mongo
@pytest.mark.parametrize("storage", ["mongodb"])
def test_restarted_processor_predicts_from_the_stored_knowledge(make_kb: MakeKb) -> None:
    kb_id = new_kb_id()
    first = Processor(processor_id="p1", kb=make_kb(kb_id))
    for event in ("alpha", "beta", "gamma"):
        first.observe([event], unique_id=event)
    learned = first.learn()
    first.kb.close()

    second = Processor(processor_id="p1", kb=make_kb(kb_id))
    second.observe(["alpha"], unique_id="r1")
    second.observe(["beta"], unique_id="r2")
    names = [prediction["name"] for prediction in second.predictions()]
    assert names == [learned]
    assert second.predictions(unique_id="r2") == second.predictions()


def test_clear_all_empties_the_store(make_kb: MakeKb) -> None:
    kb: KnowledgeBase = make_kb()
    processor = Processor(processor_id="p1", kb=kb)
    for event in ("alpha", "beta"):
        processor.observe([event], unique_id=event)
    processor.learn()
    processor.clear_all()
    assert kb.pattern_count() == 0
    processor.observe(["alpha"], unique_id="a2")
    processor.observe(["beta"], unique_id="b2")
    assert processor.predictions() == []
