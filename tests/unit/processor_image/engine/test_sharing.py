"""Knowledge shared between memory stores through a log of changes (``engine.sharing``)."""

from __future__ import annotations

from processor_image.engine import Processor
from processor_image.engine.sharing import KnowledgeOp
from processor_image.storage import MemoryKnowledgeBase


def _processor(pid: str, *, share: bool = True) -> Processor:
    return Processor(processor_id=pid, kb=MemoryKnowledgeBase(), share=share)


def _learn(processor: Processor, *events: str) -> str:
    for event in events:
        processor.observe([event], [], {}, f"{processor.processor_id}-{event}")
    return processor.learn()


def _logged(log: list[KnowledgeOp], origin: str, ops: list[KnowledgeOp]) -> None:
    for op in ops:
        log.append(
            KnowledgeOp(
                op=op.op, origin=origin, name=op.name, pattern=op.pattern, emotives=op.emotives
            )
        )


def test_changes_drained_from_one_processor_bring_another_to_the_same_knowledge() -> None:
    a, b = _processor("a"), _processor("b")
    log: list[KnowledgeOp] = []
    name = _learn(a, "x", "y")
    _learn(a, "x", "y")  # twice: frequency 2
    _logged(log, "a", a.drain_knowledge())
    assert a.drain_knowledge() == []
    assert b.apply_knowledge(0, log) == 2
    assert b.get_pattern(name) == a.get_pattern(name)
    assert b.get_pattern(name)["frequency"] == 2  # type: ignore[index]
    # b matches it at once: its index holds the pattern.
    b.observe(["x"], [], {}, "o1")
    b.observe(["y"], [], {}, "o2")
    assert [p["name"] for p in b.predictions()] == [name]


def test_a_processor_skips_its_own_entries_and_resends_are_refused_at_a_wrong_offset() -> None:
    a = _processor("a")
    log: list[KnowledgeOp] = []
    name = _learn(a, "p", "q")
    _logged(log, "a", a.drain_knowledge())
    assert a.apply_knowledge(0, log) == 1
    assert a.get_pattern(name)["frequency"] == 1  # type: ignore[index]
    assert a.apply_knowledge(0, log) == 1  # the wrong position: nothing applied
    assert a.get_pattern(name)["frequency"] == 1  # type: ignore[index]


def test_a_clear_in_the_log_wipes_the_other_store() -> None:
    a, b = _processor("a"), _processor("b")
    log: list[KnowledgeOp] = []
    name = _learn(b, "m", "n")
    _logged(log, "b", b.drain_knowledge())
    a.apply_knowledge(0, log)
    a.clear_all()
    _logged(log, "a", a.drain_knowledge())
    assert b.apply_knowledge(0, log) == 2
    assert b.get_pattern(name) is None
    assert b.pattern_count() == 0


def test_the_outbox_and_offset_travel_in_snapshots_and_replays_record_nothing() -> None:
    a = _processor("a")
    _learn(a, "s", "t")
    a.apply_knowledge(0, [KnowledgeOp(op="clear", origin="elsewhere")])
    restored = _processor("a")
    restored.restore(a.snapshot())
    assert restored.share is not None
    assert restored.share.offset == 1
    assert len(restored.drain_knowledge()) == 1
    restored.share_paused = True
    _learn(restored, "u", "v")
    assert restored.drain_knowledge() == []


def test_without_sharing_nothing_is_recorded() -> None:
    plain = _processor("plain", share=False)
    _learn(plain, "a", "b")
    assert plain.drain_knowledge() == []
    assert plain.apply_knowledge(0, [KnowledgeOp(op="clear", origin="x")]) == 0
    assert plain.pattern_count() == 1
