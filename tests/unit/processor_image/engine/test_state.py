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


def test_predictions_json_is_the_encoded_predictions_after_any_restore() -> None:
    """The latest predictions are served as JSON without decoding them (names prefixed in the
    bytes); a restored snapshot whose cached predictions are laid out otherwise (hand-made: a
    prefixed name, keys in another order, an emotives dict that looks like a prediction) reads
    back exactly as ``predictions()`` says too."""
    source = busy_processor()
    assert source.predictions()
    assert source.predictions_json() == msgspec.json.encode(source.predictions())
    assert source.predictions_json("s2") == msgspec.json.encode(source.predictions("s2"))
    state = source.snapshot()
    first, *rest = state.predictions
    odd = [
        {**first, "name": "PTRN|" + first["name"]},
        {"name": first["name"], **{k: v for k, v in first.items() if k != "name"}},
        {**first, "emotives": {"type": "prototypical", "name": "x"}},
    ]
    for cached in ([first], rest, [*odd[:1], *rest], [odd[1]], [odd[2]], [first, odd[2]]):
        target = Processor(processor_id="p1", kb=MemoryKnowledgeBase())
        target.restore(msgspec.structs.replace(state, predictions=cached))
        assert target.predictions_json() == msgspec.json.encode(target.predictions())
        assert all(p["name"].startswith("PTRN|") for p in target.predictions())
