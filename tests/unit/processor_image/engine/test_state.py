"""Snapshot and restore: a restored processor is indistinguishable (hibernation)."""

import msgspec

from processor_image.engine import Genes, Processor, ProcessorState
from processor_image.storage.memory import MemoryKnowledgeBase


def busy_processor() -> Processor:
    p = Processor(processor_id="p1", kb=MemoryKnowledgeBase(), genes=Genes(persistence=3))
    p.update_genes({"recall_threshold": 0.2, "max_pattern_length": 9})
    for words in ["a b c", "a b d", "x y z"]:
        for w in words.split():
            p.observe([w], emotives={"joy": 0.5}, unique_id=w)
        p.learn()
    p.observe(["a"], emotives={"fear": 0.1}, unique_id="s1")
    p.observe(["b"], unique_id="s2")
    return p


def observable(p: Processor) -> tuple[object, ...]:
    return (
        p.stm,
        p.time,
        msgspec.structs.asdict(p.genes),
        p.predictions(),
        p.predictions("s2"),
        p.cognition_data(),
        p.percept_data(),
        p.pattern_count(),
        [p.get_gene(g) for g in ("sort", "persistence", "kb_id")],
    )


def test_restore_into_a_fresh_processor_is_indistinguishable() -> None:
    source = busy_processor()
    wire = msgspec.json.encode(source.snapshot())
    target = Processor(processor_id="p1", kb=MemoryKnowledgeBase())
    target.restore(msgspec.json.decode(wire, type=ProcessorState))
    assert observable(target) == observable(source)
    for p in (source, target):
        p.observe(["c"], unique_id="next")
        p.learn()
        p.observe(["a"], unique_id="n2")
        p.observe(["b"], unique_id="n3")
    assert observable(target) == observable(source)
